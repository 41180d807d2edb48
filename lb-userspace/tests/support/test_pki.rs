//! A test CA and the server certificates the TLS check tests need, made with rcgen and
//! written as PEM files (for nginx, HAProxy and lb's `ca-file`); plus small TLS servers on
//! tokio-rustls for the faults a real web server does not produce on demand.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// The name the good certificate is for.
pub const NAME: &str = "web.test";

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pem {
    /// A rustls server configuration presenting this certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("certs");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("key");
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config");
        Arc::new(config)
    }
}

/// Everything under one directory, removed on drop.
pub struct TestPki {
    pub dir: PathBuf,
    /// The CA certificate: the `ca-file`.
    pub ca: PathBuf,
    /// Signed by the CA for [`NAME`], valid now.
    pub good: Pem,
    /// Signed by the CA for `other.test`.
    pub other_name: Pem,
    /// Signed by the CA for [`NAME`], expired in 2021.
    pub expired: Pem,
    /// Self-signed for [`NAME`].
    pub self_signed: Pem,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("pki dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "lb test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write ca");
        let issuer = Issuer::new(ca_params, ca_key);

        let write = |name: &str, cert: &rcgen::Certificate, key: &KeyPair| {
            let p = Pem {
                cert: dir.join(format!("{name}.pem")),
                key: dir.join(format!("{name}.key")),
            };
            std::fs::write(&p.cert, cert.pem()).expect("write cert");
            std::fs::write(&p.key, key.serialize_pem()).expect("write key");
            p
        };
        let leaf = |name: &str, san: &str, expired: bool| {
            let mut params = CertificateParams::new(vec![san.to_string()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, san);
            if expired {
                params.not_before = date_time_ymd(2020, 1, 1);
                params.not_after = date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &issuer).expect("sign");
            write(name, &cert, &key)
        };
        let good = leaf("good", NAME, false);
        let other_name = leaf("other", "other.test", false);
        let expired = leaf("expired", NAME, true);
        let self_signed = {
            let mut params = CertificateParams::new(vec![NAME.to_string()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, NAME);
            let key = KeyPair::generate().expect("key");
            let cert = params.self_signed(&key).expect("self-signed");
            write("self", &cert, &key)
        };
        TestPki {
            dir: dir.to_path_buf(),
            ca,
            good,
            other_name,
            expired,
            self_signed,
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
