//! TLS for health checks (rustls with ring): HAProxy's `verify`/`ca-file` rules, and the one
//! hook that tells a TLS handshake under way from a TCP connect still pending.
//!
//! HAProxy (OpenSSL, `ssl_sock_srv_verifycbk`) with `verify required` checks the chain
//! against `ca-file` and the validity dates; the certificate's name is checked against the
//! SNI sent, and not at all when none is sent. rustls checks the name always, so the verifier
//! here forgives a name mismatch when no SNI was sent. With `verify none` any certificate is
//! taken (the handshake's signatures are still verified, as OpenSSL does).
//!
//! Sessions are never resumed: every check is a full handshake, so a certificate that
//! expires or changes is seen at the next check.
use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, NamedGroup, RootCertStore,
    SignatureScheme,
    client::{
        ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use super::spec::TlsSpec;
use crate::config::{Config, Verify};

/// HAProxy's `info` for a certificate whose name is not the SNI sent
/// (`CO_ER_SSL_MISMATCH_SNI`).
pub const NAME_MISMATCH: &str =
    "Server presented an SSL certificate different from the expected one";
/// HAProxy's `info` for every other handshake failure (`CO_ER_SSL_HANDSHAKE`): bad or
/// expired certificate, unknown CA, alert from the server, plain text on a TLS port,
/// connection closed or reset during the handshake.
pub const HANDSHAKE_FAILURE: &str = "SSL handshake failure";

/// The `info` of a check whose TLS handshake failed with `e`.
pub fn handshake_failure(e: &Error) -> &'static str {
    match e {
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => NAME_MISMATCH,
        _ => HANDSHAKE_FAILURE,
    }
}

/// The `info` of a failed handshake, from rustls's error if it had one (else the socket
/// failed: reset or closed). HAProxy appends the OS error to its text when `errno` still
/// holds it by the time the check is reported, which for a reset during the handshake it
/// does or not depending on timing (both forms were seen against the same server); lb keeps
/// the stable part.
pub fn handshake_info(tls: Option<&Error>) -> String {
    tls.map_or(HANDSHAKE_FAILURE, handshake_failure).to_string()
}

/// The name a check's handshake is for: the SNI when there is one, else the address (an IP
/// address sends no SNI).
pub fn server_name(tls: &TlsSpec, ip: std::net::IpAddr) -> Result<ServerName<'static>, String> {
    match &tls.sni {
        Some(sni) => ServerName::try_from(sni.clone())
            .map_err(|_| format!("'{sni}' is not a valid TLS server name")),
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

/// Called when a handshake starts, that is when the TCP connection it runs on is
/// established.
pub type OnHandshake = Arc<dyn Fn() + Send + Sync>;

/// The client configuration of a check. `on_handshake` runs as the first handshake message
/// is built: the TCP connection is then up, which is how the checks that go through reqwest
/// (whose connector does TCP and TLS in one step) tell L4TOUT from L6TOUT.
pub fn client_config(tls: &TlsSpec, on_handshake: OnHandshake) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match tls.verify {
        Verify::None => Arc::new(AcceptAny {
            algs: provider.signature_verification_algorithms,
        }),
        Verify::Required => {
            let Some(path) = &tls.ca_file else {
                return Err("verify is enabled but no CA file specified".into());
            };
            let roots = Arc::new(roots(path)?);
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("ca-file '{}': {e}", path.display()))?;
            Arc::new(NameOnlyWithSni {
                inner,
                check_name: tls.sni.is_some(),
            })
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::store(Arc::new(HandshakeWatch(on_handshake)));
    Ok(config)
}

/// CA files read before the process chroots or drops privileges, by path.
fn preloaded() -> &'static Mutex<HashMap<PathBuf, Vec<CertificateDer<'static>>>> {
    static CA_FILES: OnceLock<Mutex<HashMap<PathBuf, Vec<CertificateDer<'static>>>>> =
        OnceLock::new();
    CA_FILES.get_or_init(Default::default)
}

/// Reads every `ca-file` of `cfg` now, for checks started later inside a `chroot` where the
/// path may no longer exist (HAProxy loads them before it chroots, too). A file that cannot
/// be read now is left to fail, with its reason, when its checks start.
pub fn preload(cfg: &Config) {
    for s in cfg.backends.iter().flat_map(|b| &b.servers) {
        if let Some(p) = &s.check_tls.ca_file
            && let Ok(certs) = read_ca_file(p)
        {
            preloaded()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p.clone(), certs);
        }
    }
}

/// The certificates of a PEM file, or HAProxy's reason why not.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let open =
        |e: &dyn fmt::Display| format!("Couldn't open the ca-file '{}' ({e}).", path.display());
    let bytes = std::fs::read(path).map_err(|e| open(&super::run::os_error_text(&e)))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unable to load '{}': {e}.", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "unable to load '{}': no certificate in it.",
            path.display()
        ));
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = match read_ca_file(path) {
        Ok(c) => c,
        Err(e) => preloaded()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
            .ok_or(e)?,
    };
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("ca-file '{}': {e}", path.display()))?;
    }
    Ok(roots)
}

/// `verify required`: the chain must lead to the CA file and be valid now; the name counts
/// only when an SNI was sent.
#[derive(Debug)]
struct NameOnlyWithSni {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for NameOnlyWithSni {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // webpki checks the chain and dates before the name, so a name error means the rest
        // passed.
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `verify none`.
#[derive(Debug)]
struct AcceptAny {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A session store that stores nothing (no resumption) and reports when rustls looks up a
/// session: that happens while the ClientHello is built, right after the TCP connection is
/// established.
struct HandshakeWatch(OnHandshake);

impl fmt::Debug for HandshakeWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandshakeWatch")
    }
}

impl ClientSessionStore for HandshakeWatch {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        (self.0)();
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        (self.0)();
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {}

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        (self.0)();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_handshake_failures() {
        assert_eq!(
            handshake_failure(&Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            NAME_MISMATCH
        );
        for e in [
            Error::InvalidCertificate(CertificateError::Expired),
            Error::InvalidCertificate(CertificateError::UnknownIssuer),
            Error::AlertReceived(rustls::AlertDescription::UnrecognisedName),
            Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ] {
            assert_eq!(handshake_failure(&e), HANDSHAKE_FAILURE, "{e:?}");
        }
        assert_eq!(handshake_info(None), HANDSHAKE_FAILURE);
    }

    #[test]
    fn ca_file_problems_are_named() {
        let e = read_ca_file(Path::new("/nonexistent/ca.pem")).expect_err("missing");
        assert_eq!(
            e,
            "Couldn't open the ca-file '/nonexistent/ca.pem' (No such file or directory)."
        );
        let dir = std::env::temp_dir().join(format!("lb-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        assert!(
            read_ca_file(&empty)
                .expect_err("empty")
                .contains("no certificate")
        );
        let spec = TlsSpec {
            sni: None,
            verify: Verify::Required,
            ca_file: Some(empty),
        };
        assert!(client_config(&spec, Arc::new(|| {})).is_err());
        let none = TlsSpec {
            sni: Some("web.test".into()),
            verify: Verify::None,
            ca_file: None,
        };
        assert!(client_config(&none, Arc::new(|| {})).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names() {
        let ip: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        let mut t = TlsSpec {
            sni: None,
            verify: Verify::None,
            ca_file: None,
        };
        assert!(matches!(server_name(&t, ip), Ok(ServerName::IpAddress(_))));
        t.sni = Some("web.test".into());
        assert!(matches!(server_name(&t, ip), Ok(ServerName::DnsName(_))));
        t.sni = Some("bad name".into());
        assert!(server_name(&t, ip).is_err());
    }
}
