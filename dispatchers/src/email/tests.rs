//! The email dispatcher against a real SMTP server (aiosmtpd, `scripts/smtp-sink.py`), the
//! real embedded log and store: what arrives, and what becomes of deferrals and refusals.

use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::stage::{self, StageConfig};
use bus::{Bus, Record};
use mail_parser::MessageParser;
use model::email::EmailJob;
use model::language::Language;
use model::pipeline::{encode, topics};
use model::status::{ChannelStatus, MessageStatus};
use store::conformance::{fresh_fiscal_code, sample_record};
use store::sqlite::SqliteStore;
use store::Store;
use tokio::sync::watch;

use super::mailer::{MailError, Mailer, OutboxMailer, SmtpMailer};
use super::render::compose;
use super::{EmailStage, SmtpSettings, SmtpTls, GROUP};
use crate::test_support::{emails_in, SmtpSink};

fn from() -> lettre::Address {
    "notifiche@postino.example".parse().expect("from")
}

/// A job to `to`, with markdown that needs sanitising.
fn job(to: &str, language: Language) -> EmailJob {
    let fc = fresh_fiscal_code();
    let plan = model::pipeline::DeliveryPlan {
        message: sample_record(&fc, 1, MessageStatus::Accepted).message,
        channels: model::channels::ChannelPlan {
            email: model::channels::ChannelChoice::Send,
            push: model::channels::ChannelChoice::Send,
        },
        push_content: model::profile::PushContent::Anonymous,
        preferred_languages: vec![],
        email: Some(to.to_string()),
    };
    let mut job = EmailJob::for_plan(&plan).expect("job");
    job.language = language;
    // The sample message is old; this one is still worth sending for an hour.
    job.expires_at = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    job.markdown = "Il bollo scade il **31 gennaio**. [Paga ora](https://pagopa.example/pay)\n\n\
                    <script>alert('x')</script>\n\n![pixel](https://tracker.example/p.gif)"
        .into();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_arrives_multipart_in_the_citizens_language_and_sanitised() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let mailer = SmtpMailer::new(&sink.settings()).expect("mailer");
    let j = job("mario.rossi@example.org", Language::German);
    mailer
        .send(j.message_id, &compose(&j, &from()).expect("compose"))
        .await
        .expect("accepted");

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let mail = MessageParser::default()
        .parse(&received[0])
        .expect("a parsable mail");
    assert_eq!(
        mail.header_raw("X-Envelope-To").map(str::trim),
        Some("mario.rossi@example.org"),
        "the envelope names the citizen"
    );
    let sender = mail.from().and_then(|a| a.first()).expect("from");
    assert_eq!(sender.address(), Some("notifiche@postino.example"));
    assert_eq!(
        sender.name(),
        Some(format!("{} · {}", j.service_name, j.organization_name).as_str())
    );
    assert_eq!(
        mail.subject(),
        Some(format!("Sie haben eine neue Nachricht: {}", j.subject).as_str())
    );
    assert_eq!(
        mail.header_raw("X-Postino-Message-Id").map(str::trim),
        Some(j.message_id.to_string().as_str())
    );
    assert_eq!(
        mail.message_id(),
        Some(format!("{}.notification@postino.example", j.message_id).as_str())
    );
    let text = mail.body_text(0).expect("a text part");
    let html = mail.body_html(0).expect("an HTML part");
    assert!(
        text.contains("31 gennaio") && text.contains("E-Mail-Einstellungen"),
        "{text}"
    );
    assert!(html.contains("<strong>31 gennaio</strong>"), "{html}");
    assert!(
        html.contains("href=\"https://pagopa.example/pay\""),
        "{html}"
    );
    for banned in ["<script", "alert(", "<img", "tracker.example"] {
        assert!(!html.contains(banned), "{banned} in {html}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferrals_refusals_and_a_relay_that_is_down_are_told_apart() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let mailer = SmtpMailer::new(&sink.settings()).expect("mailer");
    let send = |to: &str| {
        let j = job(to, Language::Italian);
        let email = compose(&j, &from()).expect("compose");
        let mailer = &mailer;
        async move { mailer.send(j.message_id, &email).await }
    };
    let deferred = send("tempfail.anna@example.org").await.expect_err("451");
    assert!(
        matches!(&deferred, MailError::Retry(r) if r.contains("451")),
        "{deferred:?}"
    );
    let refused = send("reject.luca@example.org").await.expect_err("550");
    assert!(
        matches!(&refused, MailError::Rejected(r) if r.contains("550")),
        "{refused:?}"
    );
    for err in [&deferred, &refused] {
        assert!(
            !err.to_string().contains("@example.org"),
            "no address in {err}"
        );
    }
    assert!(sink.received().is_empty());

    let port = sink.port;
    drop(sink);
    let down = SmtpMailer::new(&SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        pool_size: 1,
        timeout: Duration::from_secs(5),
    })
    .expect("mailer");
    let j = job("x@example.org", Language::Italian);
    let err = down
        .send(j.message_id, &compose(&j, &from()).expect("compose"))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, MailError::Retry(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_sends_retries_dead_letters_and_expires_per_outcome() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");

    let fine = job("giulia@example.org", Language::English);
    let flaky = job("flaky.paolo@example.org", Language::Italian);
    let deferred = job("tempfail.anna@example.org", Language::Italian);
    let refused = job("reject.luca@example.org", Language::Italian);
    let mut expired = job("sara@example.org", Language::Italian);
    expired.expires_at = 1;
    let jobs = [fine, flaky, deferred, refused, expired];
    for j in &jobs {
        let record = sample_record(&fresh_fiscal_code(), 1, MessageStatus::Processed);
        let record = store::MessageRecord {
            message: model::pipeline::AcceptedMessage {
                id: j.message_id,
                ..record.message
            },
            ..record
        };
        store.deliver(vec![record]).await.expect("deliver");
    }
    let records = jobs
        .iter()
        .map(|j| Record::new(b"citizen".to_vec(), encode(j)))
        .collect();
    bus.publish(topics::DELIVERIES_EMAIL, records)
        .await
        .expect("publish");
    let mut dlq = bus
        .subscribe("deliveries.email.dlq", "t")
        .await
        .expect("dlq");
    let (stop, stopped) = watch::channel(false);
    let stage = EmailStage::new(
        Arc::clone(&store),
        Arc::new(SmtpMailer::new(&sink.settings()).expect("mailer")),
        from(),
        4,
    );
    let runner = tokio::spawn(stage::run(
        Arc::clone(&bus),
        topics::DELIVERIES_EMAIL,
        GROUP,
        Arc::new(stage),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            max_attempts: 3,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(20),
            ..Default::default()
        },
        stopped,
    ));
    // The refused one at once, the always-deferred one after its attempts; by then the
    // flaky one's retry (queued before the deferred one's last attempt) has been sent.
    let dead = bus::conformance::collect(&mut *dlq, 2).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    let mut dead_ids: Vec<_> = dead
        .iter()
        .map(|d| {
            model::pipeline::decode::<EmailJob>(&d.record.payload)
                .expect("job")
                .message_id
        })
        .collect();
    dead_ids.sort();
    let mut expected_dead = vec![jobs[2].message_id, jobs[3].message_id];
    expected_dead.sort();
    assert_eq!(dead_ids, expected_dead);

    let mut delivered: Vec<String> = sink
        .received()
        .iter()
        .map(|raw| {
            MessageParser::default()
                .parse(raw)
                .and_then(|m| {
                    m.header_raw("X-Postino-Message-Id")
                        .map(|v| v.trim().to_string())
                })
                .expect("message id header")
        })
        .collect();
    delivered.sort();
    let mut expected = vec![
        jobs[0].message_id.to_string(),
        jobs[1].message_id.to_string(),
    ];
    expected.sort();
    assert_eq!(
        delivered, expected,
        "each deliverable email exactly once, nothing expired"
    );

    let status = |i: usize| {
        let store = Arc::clone(&store);
        let id = jobs[i].message_id;
        async move {
            store
                .get_message(&id)
                .await
                .expect("get")
                .expect("there")
                .notification
                .email
        }
    };
    assert_eq!(status(0).await, Some(ChannelStatus::Sent));
    assert_eq!(
        status(1).await,
        Some(ChannelStatus::Sent),
        "sent on its retry"
    );
    assert_eq!(
        status(2).await,
        Some(ChannelStatus::Failed),
        "deferred past its attempts"
    );
    assert_eq!(
        status(3).await,
        Some(ChannelStatus::Failed),
        "refused for good"
    );
    assert_eq!(status(4).await, Some(ChannelStatus::Expired));
}

#[tokio::test]
async fn without_a_relay_each_email_is_one_eml_file_in_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let mailer = OutboxMailer::new(outbox.clone()).expect("outbox");
    let j = job("mario@example.org", Language::Italian);
    let email = compose(&j, &from()).expect("compose");
    mailer.send(j.message_id, &email).await.expect("written");
    mailer
        .send(j.message_id, &email)
        .await
        .expect("written again");
    let files = emails_in(&outbox);
    assert_eq!(files.len(), 1, "a retry rewrites the same file");
    let mail = MessageParser::default().parse(&files[0]).expect("parsable");
    assert!(mail
        .subject()
        .is_some_and(|s| s.starts_with("Hai un nuovo messaggio")));
    assert!(outbox.join(format!("{}.eml", j.message_id)).exists());
}
