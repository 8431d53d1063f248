//! `smtp://` and `smtps://`: email through an SMTP server with lettre over rustls (STARTTLS by
//! default, TLS from the start, or none for a local relay), with the backup attached when it is
//! delivered. Extra trusted roots come from `?cafile=` or `SSL_CERT_FILE`.

use super::retry::Failure;
use super::url::{Encryption, Smtp};
use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// A file to attach.
pub struct File {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Sends one email.
///
/// # Errors
/// A bad address or certificate file (for good), or the server failed (worth retrying).
pub async fn send(
    smtp: &Smtp,
    subject: &str,
    body: &str,
    attachment: Option<&File>,
    timeout: Duration,
) -> Result<(), Failure> {
    let message = message(smtp, subject, body, attachment)?;
    let transport = transport(smtp, timeout)?;
    transport.send(message).await.map(drop).map_err(|e| {
        let text = format!("SMTP {}:{}: {e}", smtp.host, smtp.port);
        if e.is_permanent() {
            Failure::permanent(text)
        } else {
            Failure::transient(text)
        }
    })
}

/// The email: the text, and the attachment when there is one.
fn message(
    smtp: &Smtp,
    subject: &str,
    body: &str,
    attachment: Option<&File>,
) -> Result<Message, Failure> {
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| Failure::permanent(format!("invalid email address {a:?}: {e}")))
    };
    let mut builder = Message::builder()
        .from(mailbox(&smtp.from)?)
        .subject(subject);
    for to in &smtp.to {
        builder = builder.to(mailbox(to)?);
    }
    let text = SinglePart::plain(body.to_string());
    let built = match attachment {
        None => builder.singlepart(text),
        Some(f) => builder.multipart(MultiPart::mixed().singlepart(text).singlepart(
            Attachment::new(f.name.clone()).body(
                f.bytes.clone(),
                ContentType::parse("application/octet-stream").unwrap_or(ContentType::TEXT_PLAIN),
            ),
        )),
    };
    built.map_err(|e| Failure::permanent(format!("cannot build the email: {e}")))
}

/// The connection as the destination asks for it.
fn transport(
    smtp: &Smtp,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, Failure> {
    let tls = match smtp.encryption {
        Encryption::None => Tls::None,
        Encryption::StartTls => Tls::Required(tls_parameters(smtp)?),
        Encryption::Tls => Tls::Wrapper(tls_parameters(smtp)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&smtp.user, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// The system's roots (and `SSL_CERT_FILE`), plus `?cafile=`.
fn tls_parameters(smtp: &Smtp) -> Result<TlsParameters, Failure> {
    let mut builder = TlsParameters::builder(smtp.host.clone());
    if let Some(path) = &smtp.cafile {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::permanent(format!("cannot read cafile {}: {e}", path.display()))
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            Failure::permanent(format!(
                "cafile {} holds no certificate: {e}",
                path.display()
            ))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| Failure::permanent(format!("cannot set up TLS: {e}")))
}
