//! `purse-admin service-…`: credentials of the game services that charge game fees and pay game
//! rewards (`POST /v1/games/fees`, `POST /v1/games/rewards`; see `purse::auth::service`).
//!
//! A credential is a client id (`svc_…`) and a secret, printed once by `service-create` and kept
//! only as its SHA-256. It belongs to a service name: the name keys the game's movements, so a
//! rotation — a second credential under the same name, then `service-revoke` of the first —
//! keeps every retry exactly-once. Revocation takes effect on the next request.

use purse::auth::service::{authorization_header, Scopes, ServiceName};
use purse::domain::ids::ServiceId;
use purse::store::services::{self, Revoked};
use purse::store::Table;

/// The usage line of the service commands.
pub const USAGE: &str = "service-create --name <name> --scopes <games:fees,games:rewards> \
                         | service-list [--name <name>] | service-revoke <client-id>";

/// A service command, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A new credential for `name` with `scopes`; the secret is printed once.
    Create { name: ServiceName, scopes: Scopes },
    /// Every credential (of one name), revoked ones too.
    List { name: Option<String> },
    /// Revokes one credential.
    Revoke { id: ServiceId },
}

impl Command {
    /// Parses the arguments, the command name (`service-create`, ...) first.
    ///
    /// # Errors
    /// A message naming what is wrong, with [`USAGE`].
    pub fn parse(args: &[&str]) -> Result<Self, String> {
        let usage = |what: &str| format!("{what}\nusage: purse-admin {USAGE}");
        let (command, rest) = args.split_first().ok_or_else(|| usage("no command"))?;
        let mut name = None;
        let mut scopes = None;
        let mut positional = Vec::new();
        let mut rest = rest.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "--name" => name = Some(rest.next().ok_or_else(|| usage("--name needs a value"))?.to_string()),
                "--scopes" => scopes = Some(rest.next().ok_or_else(|| usage("--scopes needs a value"))?.to_string()),
                other if other.starts_with("--") => return Err(usage(&format!("unknown option {other}"))),
                other => positional.push(other),
            }
        }
        match (*command, positional.as_slice()) {
            ("service-create", []) => {
                let name = ServiceName::parse(&name.ok_or_else(|| usage("service-create needs --name"))?)
                    .map_err(|e| usage(&e))?;
                let scopes = Scopes::parse(&scopes.ok_or_else(|| usage("service-create needs --scopes"))?)
                    .map_err(|e| usage(&e))?;
                Ok(Command::Create { name, scopes })
            }
            ("service-list", []) if scopes.is_none() => Ok(Command::List { name }),
            ("service-revoke", [id]) if name.is_none() && scopes.is_none() => {
                let id = ServiceId::parse(id).map_err(|_| usage(&format!("{id} is not a client id (svc_…)")))?;
                Ok(Command::Revoke { id })
            }
            _ => Err(usage("unknown service command or options")),
        }
    }
}

/// Runs a service command against the table; `operator` is recorded as who did it.
///
/// # Errors
/// A message for the operator: storage failures, an unknown client id.
pub async fn run(table: &Table, command: Command, operator: &str) -> Result<(), String> {
    match command {
        Command::Create { name, scopes } => {
            let others: Vec<String> = services::list(table)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|c| c.name == name.as_str() && c.is_active())
                .map(|c| c.id.to_string())
                .collect();
            let (credential, secret) =
                services::create(table, &name, &scopes, operator).await.map_err(|e| e.to_string())?;
            let shown = serde_json::json!({
                "client_id": credential.id,
                "name": credential.name,
                "scopes": credential.scopes,
                "secret": secret.expose(),
                "authorization": authorization_header(credential.id.as_str(), secret.expose()),
            });
            println!("{}", serde_json::to_string_pretty(&shown).unwrap_or_default());
            eprintln!(
                "the secret is shown only now (Purse keeps its SHA-256): put it in the game service's secret store"
            );
            if !others.is_empty() {
                eprintln!(
                    "{name} has other active credentials ({}): a rotation; revoke the old one with \
                     `purse-admin service-revoke <client-id>` once the game uses the new one",
                    others.join(", "),
                    name = name.as_str()
                );
            }
            tracing::warn!(service_id = %credential.id, service = name.as_str(), operator, "service credential created");
            Ok(())
        }
        Command::List { name } => {
            let items: Vec<_> = services::list(table)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|c| name.as_deref().is_none_or(|n| c.name == n))
                .collect();
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "items": items })).unwrap_or_default());
            Ok(())
        }
        Command::Revoke { id } => match services::revoke(table, &id, operator).await.map_err(|e| e.to_string())? {
            Revoked::Now(credential) => {
                tracing::warn!(service_id = %id, service = %credential.name, operator, "service credential revoked");
                println!("{}", serde_json::to_string_pretty(&credential).unwrap_or_default());
                eprintln!("{id} ({}) is revoked: its next request is refused with 401", credential.name);
                Ok(())
            }
            Revoked::Already(credential) => {
                println!("{}", serde_json::to_string_pretty(&credential).unwrap_or_default());
                eprintln!("{id} was already revoked; nothing changed");
                Ok(())
            }
            Revoked::NotFound => Err(format!("no service credential {id}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_commands_parse_with_their_options() {
        let create =
            Command::parse(&["service-create", "--name", "chess-arena", "--scopes", "games:fees,games:rewards"])
                .unwrap();
        assert_eq!(
            create,
            Command::Create {
                name: ServiceName::parse("chess-arena").unwrap(),
                scopes: Scopes::parse("games:rewards,games:fees").unwrap()
            }
        );
        assert_eq!(
            Command::parse(&["service-create", "--scopes", "games:fees", "--name", "poker"]).unwrap(),
            Command::Create {
                name: ServiceName::parse("poker").unwrap(),
                scopes: Scopes::parse("games:fees").unwrap()
            }
        );
        assert_eq!(Command::parse(&["service-list"]).unwrap(), Command::List { name: None });
        assert_eq!(
            Command::parse(&["service-list", "--name", "poker"]).unwrap(),
            Command::List { name: Some("poker".into()) }
        );
        let id = ServiceId::generate();
        assert_eq!(Command::parse(&["service-revoke", id.as_str()]).unwrap(), Command::Revoke { id: id.clone() });
        for bad in [
            &["service-create", "--name", "chess-arena"][..],
            &["service-create", "--scopes", "games:fees"],
            &["service-create", "--name", "Chess Arena", "--scopes", "games:fees"],
            &["service-create", "--name", "chess", "--scopes", "games:everything"],
            &["service-create", "--name", "chess", "--scopes", ""],
            &["service-create", "--name"],
            &["service-create", "extra", "--name", "chess", "--scopes", "games:fees"],
            &["service-list", "--scopes", "games:fees"],
            &["service-list", "--force"],
            &["service-revoke"],
            &["service-revoke", "usr_01J00000000000000000000000"],
            &["service-revoke", id.as_str(), "--name", "chess"],
            &["service-rotate", id.as_str()],
        ] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
    }
}
