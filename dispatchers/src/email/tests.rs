//! The email dispatcher against a real SMTP server (aiosmtpd, `scripts/smtp-sink.py`), the
//! real embedded log and store: what arrives, and what becomes of deferrals and refusals.

use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::stage::{Stage, StageConfig};
use bus::{Bus, Record};
use mail_parser::MessageParser;
use model::email::EmailJob;
use model::language::Language;
use model::pipeline::{encode, topics};
use model::status::{Channel, ChannelStatus, MessageStatus};
use store::conformance::{fresh_fiscal_code, sample_record, sample_record_with_id};
use store::sqlite::SqliteStore;
use store::Store;
use tokio::sync::watch;

use super::mailer::{mbox_entry, outbox_file_name, MailError, Mailer, OutboxMailer, SmtpMailer};
use super::render::compose;
use super::render::MESSAGE_ID_HEADER;
use super::{EmailStage, SmtpRelay, SmtpTls, GROUP};
use testkit::mail::outbox_emails;
use testkit::smtp::SmtpSink;
use testkit::stages::{channel_status, dead_lettered, sorted_ids, spawn_stage};

/// The relay settings that reach `sink`.
fn relay(sink: &SmtpSink) -> SmtpRelay {
    SmtpRelay {
        host: "127.0.0.1".into(),
        port: sink.port,
        tls: SmtpTls::None,
        credentials: None,
        ca_pem: None,
        pool_size: 4,
        timeout: Duration::from_secs(10),
    }
}

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
        email: Some(model::email::EmailAddress::parse("email", to).expect("address")),
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

/// Stores the message of each job, publishes the jobs, and runs the email stage sending
/// through `mailer`; stop it with the sender.
async fn run_stage(
    jobs: &[EmailJob],
    mailer: SmtpMailer,
    cfg: StageConfig,
) -> (
    Arc<dyn Store>,
    Arc<dyn Bus>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), bus::BusError>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let records = jobs
        .iter()
        .map(|j| {
            sample_record_with_id(j.message_id, &fresh_fiscal_code(), MessageStatus::Processed)
        })
        .collect();
    store.deliver(records).await.expect("deliver");
    let records = jobs
        .iter()
        .map(|j| Record::new(b"citizen".to_vec(), encode(j)))
        .collect();
    bus.publish(topics::DELIVERIES_EMAIL, records)
        .await
        .expect("publish");
    let stage = EmailStage::new(
        Arc::clone(&store),
        Arc::clone(&bus),
        Arc::new(mailer),
        from(),
        4,
    );
    let (stop, runner) = spawn_stage(&bus, topics::DELIVERIES_EMAIL, GROUP, stage, cfg);
    (store, bus, stop, runner, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_arrives_multipart_in_the_citizens_language_and_sanitised() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let mailer = SmtpMailer::new(&relay(&sink)).expect("mailer");
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
    let mailer = SmtpMailer::new(&relay(&sink)).expect("mailer");
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
    let down = SmtpMailer::new(&SmtpRelay {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        ca_pem: None,
        pool_size: 1,
        timeout: Duration::from_secs(5),
    })
    .expect("mailer");
    let j = job("x@example.org", Language::Italian);
    let err = down
        .send(j.message_id, &compose(&j, &from()).expect("compose"))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_with_auth_reach_the_relay_and_a_wrong_password_waits() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (cert, key) = testkit::keys::self_signed_certificate(keys.path());
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let ca_pem = std::fs::read(&cert).expect("cert");
    for (mode, tls) in [
        ("starttls", SmtpTls::StartTls),
        ("implicit", SmtpTls::Implicit),
    ] {
        let sink_dir = tempfile::tempdir().expect("tempdir");
        let sink = SmtpSink::start_with(
            sink_dir.path(),
            &[
                "--tls-cert",
                &cert_arg,
                "--tls-key",
                &key_arg,
                "--tls",
                mode,
                "--auth",
                "postino:s3cret",
            ],
        );
        let settings = |password: &str| SmtpRelay {
            host: "localhost".into(),
            tls,
            credentials: Some(("postino".into(), password.into())),
            ca_pem: Some(ca_pem.clone()),
            ..relay(&sink)
        };
        let j = job("mario@example.org", Language::Italian);
        let email = compose(&j, &from()).expect("compose");
        SmtpMailer::new(&settings("s3cret"))
            .expect("mailer")
            .send(j.message_id, &email)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(sink.received().len(), 1, "{mode}");

        let refused = SmtpMailer::new(&settings("wrong"))
            .expect("mailer")
            .send(j.message_id, &email)
            .await
            .expect_err("wrong password");
        assert!(
            matches!(&refused, MailError::Unavailable(r) if r.contains("535")),
            "{mode}: a refused login holds the emails, it does not fail them: {refused:?}"
        );

        // Without the private CA the relay's certificate is not trusted: nothing is sent.
        let untrusted = SmtpMailer::new(&SmtpRelay {
            ca_pem: None,
            ..settings("s3cret")
        })
        .expect("mailer")
        .send(j.message_id, &email)
        .await
        .expect_err("untrusted certificate");
        assert!(
            matches!(untrusted, MailError::Unavailable(_)),
            "{mode}: {untrusted:?}"
        );
        assert_eq!(sink.received().len(), 1, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_holds_the_emails_until_it_is_back_and_loses_none() {
    // Something that accepts connections and hangs up at once: a relay that is down, which
    // also counts how often the stage tried it.
    let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = down.local_addr().expect("addr").port();
    let (tried_tx, tried) = std::sync::mpsc::channel();
    let hang_up = std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((socket, _)) = down.accept() else {
                return;
            };
            drop(socket);
            let _ = tried_tx.send(());
        }
    });

    let j = job("paola@example.org", Language::Italian);
    let settings = SmtpRelay {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        ca_pem: None,
        pool_size: 1,
        timeout: Duration::from_secs(5),
    };
    let (store, bus, stop, runner, _dir) = run_stage(
        std::slice::from_ref(&j),
        SmtpMailer::new(&settings).expect("mailer"),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            // Two attempts: were the outage counted against them, the email would be lost.
            max_attempts: 2,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..Default::default()
        },
    )
    .await;
    let tried = tokio::task::spawn_blocking(move || {
        (0..4)
            .filter(|_| tried.recv_timeout(Duration::from_secs(60)).is_ok())
            .count()
    })
    .await
    .expect("join");
    assert_eq!(tried, 4, "the stage kept trying the relay");
    hang_up.join().expect("join");
    assert_eq!(
        channel_status(&store, j.message_id, Channel::Email).await,
        Some(ChannelStatus::Throttled),
        "while the relay is down the sender sees IO's THROTTLED"
    );

    // The relay is back, on the same port.
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start_with(sink_dir.path(), &["--listen", &format!("127.0.0.1:{port}")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no email status after a minute"
        );
        let status = channel_status(&store, j.message_id, Channel::Email).await;
        if status != Some(ChannelStatus::Throttled) {
            break status;
        }
        tokio::task::yield_now().await;
    };
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");
    assert_eq!(status, Some(ChannelStatus::Sent));
    assert_eq!(sink.received().len(), 1);
    let mut dlq = bus
        .subscribe("deliveries.email.dlq", "t")
        .await
        .expect("dlq");
    assert!(dlq
        .poll(10, Duration::from_millis(100))
        .await
        .expect("poll")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_sends_retries_dead_letters_and_expires_per_outcome() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let fine = job("giulia@example.org", Language::English);
    let flaky = job("flaky.paolo@example.org", Language::Italian);
    let deferred = job("tempfail.anna@example.org", Language::Italian);
    let refused = job("reject.luca@example.org", Language::Italian);
    let mut expired = job("sara@example.org", Language::Italian);
    expired.expires_at = 1;
    let jobs = [fine, flaky, deferred, refused, expired];
    let (store, bus, stop, runner, _dir) = run_stage(
        &jobs,
        SmtpMailer::new(&relay(&sink)).expect("mailer"),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            max_attempts: 3,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .await;
    let mut dlq = bus
        .subscribe("deliveries.email.dlq", "t")
        .await
        .expect("dlq");
    // The refused one at once, the always-deferred one after its attempts; by then the
    // flaky one's retry (queued before the deferred one's last attempt) has been sent.
    let dead = bus::conformance::collect(&mut *dlq, 2).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    let dead_ids = dead_lettered(&dead, |j: &EmailJob| j.message_id);
    let mut expected_dead = vec![jobs[2].message_id, jobs[3].message_id];
    expected_dead.sort();
    assert_eq!(dead_ids, expected_dead);

    let delivered = sorted_ids(sink.received().iter().map(|raw| {
        MessageParser::default()
            .parse(raw)
            .and_then(|m| {
                m.header_raw("X-Postino-Message-Id")
                    .map(|v| v.trim().to_string())
            })
            .expect("message id header")
    }));
    assert_eq!(
        delivered,
        sorted_ids([jobs[0].message_id, jobs[1].message_id]),
        "each deliverable email exactly once, nothing expired"
    );

    let status = |i: usize| channel_status(&store, jobs[i].message_id, Channel::Email);
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
async fn without_a_relay_emails_are_appended_to_the_hours_mailbox_in_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let mailer = OutboxMailer::new(outbox.clone()).expect("outbox");
    let mut jobs = [
        job("mario@example.org", Language::Italian),
        job("anna@example.org", Language::English),
    ];
    // A line a mailbox would take for the start of the next email.
    jobs[1].markdown = "From the office of the comune:\n\n>From here on, pay online.".into();
    for j in &jobs {
        let email = compose(j, &from()).expect("compose");
        mailer.send(j.message_id, &email).await.expect("written");
    }
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "one mailbox for the hour: {files:?}");
    assert!(files[0].ends_with(".mbox"), "{files:?}");

    let emails = outbox_emails(&outbox);
    assert_eq!(
        emails.len(),
        2,
        "two emails, the quoted From line split none"
    );
    let parsed: Vec<_> = emails
        .iter()
        .map(|e| MessageParser::default().parse(e).expect("parsable"))
        .collect();
    let ids: Vec<_> = parsed
        .iter()
        .map(|m| {
            m.header(MESSAGE_ID_HEADER)
                .and_then(|h| h.as_text())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        ids,
        jobs.iter()
            .map(|j| Some(j.message_id.to_string()))
            .collect::<Vec<_>>()
    );
    let text = parsed[1].body_text(0).expect("text part");
    assert!(
        text.contains("From the office") && text.contains(">From here on"),
        "the From lines come back as written: {text}"
    );

    // An outbox that cannot be written holds the emails: it fails none.
    std::fs::remove_dir_all(&outbox).expect("remove");
    std::fs::write(&outbox, b"not a directory").expect("file");
    let email = compose(&jobs[0], &from()).expect("compose");
    let err = mailer
        .send(jobs[0].message_id, &email)
        .await
        .expect_err("cannot write");
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
}

#[test]
fn a_mailbox_entry_quotes_from_lines_and_ends_with_a_blank_line() {
    let at = time::macros::datetime!(2026-11-29 14:05:09 UTC);
    let entry = mbox_entry(
        b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nFromage\r\n",
        at,
    );
    assert_eq!(
        String::from_utf8_lossy(&entry),
        "From postino@localhost Sun Nov 29 14:05:09 2026\nSubject: x\n\n>From here\n>>From there\nFromage\n\n"
    );
    assert_eq!(outbox_file_name(at), "2026-11-29T14.mbox");
}

/// An email job published or delivered twice (a replayed batch, a redelivery after a
/// crash) reaches the relay once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_job_delivered_twice_is_sent_once() {
    let sink_dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(sink_dir.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let j = job("lucia@example.org", Language::Italian);
    store
        .deliver(vec![sample_record_with_id(
            j.message_id,
            &fresh_fiscal_code(),
            MessageStatus::Processed,
        )])
        .await
        .expect("deliver");
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let stage = EmailStage::new(
        Arc::clone(&store),
        bus,
        Arc::new(SmtpMailer::new(&relay(&sink)).expect("mailer")),
        from(),
        4,
    );
    for round in 0..2 {
        let verdicts = stage.process(&[&j]).await;
        assert!(
            verdicts.iter().all(Result::is_ok),
            "round {round}: {verdicts:?}"
        );
    }
    assert_eq!(sink.received().len(), 1, "sent once");
    assert_eq!(
        channel_status(&store, j.message_id, Channel::Email).await,
        Some(ChannelStatus::Sent)
    );
}
