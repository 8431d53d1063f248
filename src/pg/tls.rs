//! TLS for aos-backup's own connection (version check, table count), with libpq's `sslmode`
//! meanings: `prefer`/`require` encrypt without checking the certificate (unless a root
//! certificate is given), `verify-ca` checks the chain, `verify-full` the chain and the host name.

use crate::error::Error;
use crate::pg::conninfo::ConnInfo;
use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// Builds the TLS connector for `conn`; `env` supplies PGSSLMODE/PGSSLROOTCERT/... fallbacks.
pub fn connector(
    conn: &ConnInfo,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let get = |param: &str, var: &str| conn.param(param).map(str::to_string).or_else(|| env(var));
    let mode = get("sslmode", "PGSSLMODE").unwrap_or_else(|| "prefer".into());
    let rootcert = get("sslrootcert", "PGSSLROOTCERT").or_else(|| {
        let home = env("HOME")?;
        let p = PathBuf::from(home).join(".postgresql/root.crt");
        p.is_file().then(|| p.display().to_string())
    });
    let verify = match mode.as_str() {
        "verify-ca" | "verify-full" => true,
        // libpq: with a root certificate present, require behaves like verify-ca.
        "require" => rootcert.is_some(),
        _ => false,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?;
    let builder = if verify {
        let mut roots = rustls::RootCertStore::empty();
        match rootcert.as_deref() {
            Some("system") | None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
            Some(path) => {
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .with_context(|| format!("adding the root certificate from {path}"))?;
                }
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .context("setting up certificate verification")?;
        let verifier: Arc<dyn ServerCertVerifier> = if mode == "verify-full" {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let config = match (get("sslcert", "PGSSLCERT"), get("sslkey", "PGSSLKEY")) {
        (Some(cert), Some(key)) if std::path::Path::new(&cert).is_file() => {
            let chain = read_certs(&cert)?;
            let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
                std::fs::File::open(&key)
                    .with_context(|| format!("opening the client key {key}"))?,
            ))
            .with_context(|| format!("reading the client key {key}"))?
            .with_context(|| format!("no private key in {key}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("loading the client certificate")?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::usage(format!("cannot read the certificate file {path}: {e}"))
            .hint("check sslrootcert / sslcert in DATABASE_URL")
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(file))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("reading certificates from {path}"))?;
    if certs.is_empty() {
        return Err(Error::usage(format!("no PEM certificate in {path}")).into());
    }
    Ok(certs)
}

/// `sslmode=prefer`/`require` without a root certificate: encrypted, not authenticated (as libpq).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must be valid; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
