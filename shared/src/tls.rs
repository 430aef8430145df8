//! One TLS set-up for every outbound HTTPS client: the AWS SDK's and the providers' (Revio, KYC,
//! telephony).
//!
//! - **One HTTP stack, one TLS stack, one crypto provider**: hyper and rustls on *ring*. The AWS
//!   SDK's HTTP client is built here ([`aws_http_client`]) and the provider clients
//!   ([`crate::http_client`]) are made of the same hyper, hyper-util, hyper-rustls and rustls,
//!   configured here once ([`provider_tls_config`]). aws-lc-rs is not linked: the SDK crates are
//!   built without their `default-https-client` feature, which would bring it (and with it ~1.5 MB
//!   per binary and a C toolchain to cross-compile to arm64).
//! - **One root store, compiled in**: Mozilla's root certificates from the `webpki-root-certs`
//!   crate. No client reads the system store (`/etc/ssl/certs`, `SSL_CERT_FILE`,
//!   `SSL_CERT_DIR` have no effect): loading and parsing it cost about half of a function's
//!   cold-start CPU, twice in functions with a provider client. The roots change when the crate
//!   is updated (`cargo update -p webpki-root-certs`), not when the host's store does.
//! - **Nothing done before it is needed**: the SDK's client builds its TLS connector when a
//!   request first needs one, not once more for every SDK client constructed
//!   ([`aws_http_client`]).
//!
//! A private CA (a TLS-intercepting proxy, a sandbox served over HTTPS) is trusted only if
//! [`root_certificates`], the one list both stacks read, is made to include it. Nothing needs one
//! today: the local emulator and the provider sandboxes speak plain HTTP.

use std::sync::{Arc, LazyLock};

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use rustls::pki_types::CertificateDer;

use crate::config::InitError;

/// The certificates every client trusts as roots: Mozilla's, compiled in.
pub fn root_certificates() -> &'static [CertificateDer<'static>] {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
}

/// The rustls configuration of the provider clients, built on first use and then shared.
static PROVIDER_TLS: LazyLock<Result<rustls::ClientConfig, rustls::Error>> = LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    // Every compiled-in root parses (tested below); one that did not would only be left out.
    roots.add_parsable_certificates(root_certificates().iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
});

/// The rustls configuration of the provider clients ([`crate::http_client`]): rustls on *ring*,
/// the compiled-in roots, TLS 1.2 and 1.3. Its ALPN list is left empty for hyper-rustls to fill
/// in (HTTP/1.1 only).
///
/// # Errors
/// [`InitError::Dependency`] when the TLS configuration cannot be built (a rustls provider
/// without a usable protocol version; not expected with *ring*).
pub fn provider_tls_config() -> Result<rustls::ClientConfig, InitError> {
    PROVIDER_TLS
        .as_ref()
        .cloned()
        .map_err(|e| InitError::Dependency(format!("the TLS configuration could not be built: {e}")))
}

/// The HTTP client every AWS SDK client uses (through [`crate::config::load_aws`]): the SDK's
/// own hyper/rustls client on *ring*, trusting exactly [`root_certificates`].
///
/// The SDK takes extra roots only as PEM and parses them each time it builds a connector (once
/// per distinct connect/read timeout pair, cached by this client). By default it also builds one
/// for every SDK client constructed, only to load the system store early and throw it away; this
/// client skips that, so a function's init pays for the connectors its requests use.
pub fn aws_http_client() -> SharedHttpClient {
    let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(roots_as_pem());
    let context =
        TlsContext::builder().with_trust_store(trust).build().expect("a TLS context with a trust store always builds");
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https();
    SharedHttpClient::new(ConnectorsOnFirstUse(client))
}

/// [`root_certificates`] as one PEM bundle, the form the SDK's trust store takes.
fn roots_as_pem() -> Vec<u8> {
    use base64::Engine;
    let mut pem = String::with_capacity(root_certificates().iter().map(|c| c.len() * 4 / 3 + 64).sum());
    for cert in root_certificates() {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        base64::engine::general_purpose::STANDARD.encode_string(cert.as_ref(), &mut pem);
        pem.push_str("\n-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// An SDK HTTP client that builds connectors only when a request asks for one.
///
/// Forwards what the SDK's client implements, except `validate_base_client_config`: there it
/// builds a connector (parsing every root) for each SDK client constructed and drops it, which
/// only served to read the system store before the first request.
#[derive(Debug)]
struct ConnectorsOnFirstUse(SharedHttpClient);

impl HttpClient for ConnectorsOnFirstUse {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn every_compiled_in_root_is_a_usable_trust_anchor() {
        assert!(root_certificates().len() > 100, "Mozilla's store has well over 100 roots");
        let mut roots = rustls::RootCertStore::empty();
        for cert in root_certificates() {
            roots.add(cert.clone()).expect("a compiled-in root parses");
        }
        assert_eq!(roots.len(), root_certificates().len());
    }

    #[test]
    fn the_pem_bundle_handed_to_the_sdk_holds_exactly_the_compiled_in_roots() {
        // The SDK panics on a certificate it cannot decode, so the bundle must round-trip.
        let decoded = CertificateDer::pem_slice_iter(&roots_as_pem()).collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(decoded, root_certificates());
    }

    #[test]
    fn provider_clients_share_one_tls_configuration_on_the_compiled_in_roots() {
        let config = provider_tls_config().unwrap();
        assert!(config.alpn_protocols.is_empty(), "hyper-rustls sets ALPN itself and refuses a preset list");
        let again = provider_tls_config().unwrap();
        assert!(Arc::ptr_eq(&config.crypto_provider().clone(), &again.crypto_provider().clone()), "built once");
    }
}
