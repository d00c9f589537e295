//! Emails through the whole app: a message to a citizen with a validated address becomes an
//! email after it is readable, in the outbox by default and at a real SMTP server when one
//! is configured; a service that requires secure channels never emails.

use std::time::Duration;

use mail_parser::MessageParser;
use serde_json::json;
use testkit::mail::outbox_emails;
use testkit::smtp::SmtpSink;

use crate::helpers::{fiscal_code, service_payload, spawn_app, spawn_app_with, TestApp};

/// Follows a message until its email is decided (or 30 s pass): IO's status when the
/// channel was used, else Postino's reason for not using it.
async fn email_status(app: &TestApp, key: &str, fc: &str, id: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = app.message_status(key, fc, id).await;
        let email = &body["notification"]["email"];
        let skipped = &body["skipped_channels"]["email"];
        let decided = !email.is_null() && email != "THROTTLED";
        if decided || !skipped.is_null() || tokio::time::Instant::now() > deadline {
            return if skipped.is_null() {
                email.clone()
            } else {
                skipped.clone()
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn citizen_with_email(app: &TestApp, address: &str) -> String {
    let fc = fiscal_code();
    app.put_profile(
        &fc,
        json!({"email": address, "is_email_validated": true, "is_email_enabled": true,
               "preferred_languages": ["en_GB"]}),
    )
    .await;
    fc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_the_email_is_written_to_the_outbox() {
    let app = spawn_app().await;
    let service = app.service().await;
    let fc = citizen_with_email(&app, "mario.rossi@example.org").await;
    let id = app.send_ok(&service.key, &fc).await;

    assert_eq!(email_status(&app, &service.key, &fc, &id).await, "SENT");
    let outbox = app.dir.path().join("outbox");
    let mails = outbox_emails(&outbox);
    assert_eq!(mails.len(), 1);
    let mail = MessageParser::default().parse(&mails[0]).expect("an email");
    assert!(
        mail.subject()
            .is_some_and(|s| s.starts_with("You have a new message: ")),
        "{:?}",
        mail.subject()
    );
    assert_eq!(
        mail.header_raw("X-Postino-Message-Id").map(str::trim),
        Some(id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_relay_the_email_reaches_it_and_secure_services_never_email() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let app = spawn_app_with(|cfg| {
        cfg.smtp.host = Some("127.0.0.1".into());
        cfg.smtp.port = Some(sink.port);
        cfg.smtp.tls = dispatchers::email::SmtpTls::None;
    })
    .await;
    let service = app.service().await;
    let mut secure = service_payload("Referti");
    secure["require_secure_channel"] = json!(true);
    let secure = app.create_service(secure).await;
    let fc = citizen_with_email(&app, "giulia.bianchi@example.org").await;

    let id = app.send_ok(&service.key, &fc).await;
    let secret = app.send_ok(&secure.key, &fc).await;
    assert_eq!(email_status(&app, &service.key, &fc, &id).await, "SENT");
    assert_eq!(
        email_status(&app, &secure.key, &fc, &secret).await,
        "secure_channel_required",
        "a service that requires secure channels never emails"
    );

    let received = sink.received();
    assert_eq!(received.len(), 1, "one email, about the ordinary message");
    let mail = MessageParser::default()
        .parse(&received[0])
        .expect("an email");
    assert_eq!(
        mail.header_raw("X-Postino-Message-Id").map(str::trim),
        Some(id.as_str())
    );
    assert_eq!(
        mail.header_raw("X-Envelope-To").map(str::trim),
        Some("giulia.bianchi@example.org")
    );
    assert!(
        !app.dir.path().join("outbox").exists(),
        "nothing in the outbox"
    );
}
