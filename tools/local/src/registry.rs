//! Every function of the project by binary name, so the dev server and the tests can start the
//! very code each Lambda runs. A test checks this list against `template.yaml`.

use purse::config::InitError;
#[allow(unused_imports)]
use purse::runtime::{DynHttpFunction, DynSqsFunction, InitContext, Loaded, LoadedSqs};

/// An initialised function of either kind.
pub enum Handler {
    Http(Box<dyn DynHttpFunction>),
    Sqs(Box<dyn DynSqsFunction>),
}

macro_rules! registry {
    (http: [$($h:ident),* $(,)?], sqs: [$($s:ident),* $(,)?] $(,)?) => {
        /// Binary names of every function.
        pub const BINARIES: &[&str] = &[$(stringify!($h),)* $(stringify!($s),)*];

        /// Initialises the function built as `binary`.
        ///
        /// # Errors
        /// The function's own [`InitError`], or `InvalidEnv` for an unknown binary.
        pub async fn init(binary: &str, ctx: &InitContext) -> Result<Handler, InitError> {
            match binary {
                $(stringify!($h) => Ok(Handler::Http(Box::new(Loaded::<$h::Function>::init(ctx).await?))),)*
                $(stringify!($s) => Ok(Handler::Sqs(Box::new(LoadedSqs::<$s::Function>::init(ctx).await?))),)*
                other => Err(InitError::InvalidEnv { name: "binary".into(), reason: format!("no function {other}") }),
            }
        }
    };
}

registry! {
    http: [
        http_auth_register,
        http_auth_login,
        http_auth_refresh,
        http_auth_logout,
        http_me_get,
        http_wallet_get,
    ],
    sqs: [],
}
