//! Outgoing mail: SMTP (lettre, async, rustls), one `.eml` file per message, or the log.
//!
//! The SMTP transport is built on first use, inside the async runtime, as lettre requires.

use std::path::PathBuf;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::OnceCell;

use crate::config::{MailConfig, MailTransport, SmtpTls};
use crate::error::{AppError, AppResult};

/// A message ready to send.
#[derive(Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

// The body carries one-time links: never print it through Debug.
impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish()
    }
}

pub struct Mailer {
    config: MailConfig,
    smtp: OnceCell<AsyncSmtpTransport<Tokio1Executor>>,
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Self {
        Self {
            config: config.clone(),
            smtp: OnceCell::new(),
        }
    }

    fn build_smtp(&self) -> AppResult<AsyncSmtpTransport<Tokio1Executor>> {
        let c = &self.config;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned())
                .map_err(|e| AppError::internal(format!("mail TLS: {e}")))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.smtp_host).port(c.smtp_port);
        builder = match c.smtp_tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(&c.smtp_host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&c.smtp_host)?)),
        };
        if !c.smtp_username.is_empty() {
            builder = builder.credentials(Credentials::new(
                c.smtp_username.clone(),
                c.smtp_password.clone(),
            ));
        }
        Ok(builder.build())
    }

    fn message(&self, email: &Email) -> AppResult<Message> {
        let from: Mailbox = self
            .config
            .from
            .parse()
            .map_err(|e| AppError::internal(format!("mail.from: {e}")))?;
        let to: Mailbox = email
            .to
            .parse()
            .map_err(|e| AppError::internal(format!("recipient: {e}")))?;
        Message::builder()
            .from(from)
            .to(to)
            .subject(&email.subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(email.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(email.html.clone()),
                    ),
            )
            .map_err(|e| AppError::internal(format!("building mail: {e}")))
    }

    pub async fn send(&self, email: &Email) -> AppResult<()> {
        let sent = self.send_once(email).await;
        if sent.is_err() {
            crate::metrics::metrics().mail_failures.inc();
        }
        sent
    }

    async fn send_once(&self, email: &Email) -> AppResult<()> {
        let message = self.message(email)?;
        match self.config.transport {
            MailTransport::Smtp => {
                let transport = self
                    .smtp
                    .get_or_try_init(|| async { self.build_smtp() })
                    .await?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| AppError::Unavailable(format!("SMTP: {e}")))
            }
            MailTransport::File => {
                let dir: PathBuf = self.config.file_dir.clone();
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| AppError::internal(format!("mail.file_dir: {e}")))?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| AppError::internal(format!("writing mail: {e}")))
            }
            MailTransport::Log => {
                // Development only: the message goes to standard output, not to the log stream.
                println!(
                    "--- mail to {} ---\nSubject: {}\n\n{}\n--- end of mail ---",
                    email.to, email.subject, email.text
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn email() -> Email {
        Email {
            to: "person@example.com".into(),
            subject: "Hello".into(),
            text: "open https://auth.example/x".into(),
            html: "<p>open</p>".into(),
        }
    }

    #[actix_web::test]
    async fn file_transport_writes_one_eml_per_message() {
        let dir = tempfile_dir();
        let mut config = Config::defaults().mail;
        config.transport = MailTransport::File;
        config.file_dir = dir.clone();
        let mailer = Mailer::new(&config);
        mailer.send(&email()).await.unwrap();
        mailer.send(&email()).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: person@example.com"), "{text}");
        assert!(text.contains("Subject: Hello"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[actix_web::test]
    async fn log_transport_sends_nothing_anywhere_else() {
        let mut config = Config::defaults().mail;
        config.transport = MailTransport::Log;
        Mailer::new(&config).send(&email()).await.unwrap();
    }

    #[actix_web::test]
    async fn unreachable_smtp_is_unavailable_not_a_panic() {
        let mut config = Config::defaults().mail;
        config.transport = MailTransport::Smtp;
        config.smtp_port = 1;
        let err = Mailer::new(&config).send(&email()).await.unwrap_err();
        assert!(matches!(err, AppError::Unavailable(_)), "{err:?}");
    }

    fn tempfile_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("authmd-mail-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
