//! What a notification email says and how it is put together: the subject and fixed texts in
//! the citizen's language, the message's markdown as plain text and as sanitised HTML, the
//! service and organisation as the sender's name, and headers carrying the message id.

use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use model::email::EmailJob;
use model::html::escape;
use model::language::Language;

/// The header that names the Postino message an email is about.
pub const MESSAGE_ID_HEADER: &str = "X-Postino-Message-Id";

/// The parts of one email, before they are assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

struct Texts {
    subject: &'static str,
    /// `{service}` and `{organization}` are filled in.
    intro: &'static str,
    footer: &'static str,
}

fn texts(language: Language) -> Texts {
    match language {
        Language::Italian => Texts {
            subject: "Hai un nuovo messaggio",
            intro: "{service} ({organization}) ti ha inviato un messaggio.",
            footer: "Ricevi questa email perché hai attivato le notifiche via email. \
                     Per cambiare le tue preferenze email, apri l'app e vai in \
                     Profilo › Preferenze › Email.",
        },
        Language::English => Texts {
            subject: "You have a new message",
            intro: "{service} ({organization}) sent you a message.",
            footer: "You receive this email because you turned on email notifications. \
                     To change your email preferences, open the app and go to \
                     Profile › Preferences › Email.",
        },
        Language::German => Texts {
            subject: "Sie haben eine neue Nachricht",
            intro: "{service} ({organization}) hat Ihnen eine Nachricht gesendet.",
            footer: "Sie erhalten diese E-Mail, weil Sie E-Mail-Benachrichtigungen aktiviert \
                     haben. Um Ihre E-Mail-Einstellungen zu ändern, öffnen Sie die App und \
                     gehen Sie zu Profil › Einstellungen › E-Mail.",
        },
    }
}

fn language_tag(language: Language) -> &'static str {
    match language {
        Language::Italian => "it",
        Language::English => "en",
        Language::German => "de",
    }
}

/// The message's markdown as HTML a mail client can show safely: no scripts, styles, forms
/// or event handlers, no images (a remote image would tell the sender's server when, and
/// that, the citizen opened the email), links only to http, https and mailto.
pub fn sanitised_html(markdown: &str) -> String {
    let options =
        pulldown_cmark::Options::ENABLE_TABLES | pulldown_cmark::Options::ENABLE_STRIKETHROUGH;
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(
        &mut html,
        pulldown_cmark::Parser::new_ext(markdown, options),
    );
    SANITISER.clean(&html).to_string()
}

/// The rules of [`sanitised_html`], made once: building ammonia's rule sets cost about as
/// much as cleaning a message with them (BENCHMARKS.md, session 10).
static SANITISER: std::sync::LazyLock<ammonia::Builder<'static>> = std::sync::LazyLock::new(|| {
    let mut rules = ammonia::Builder::default();
    rules
        .rm_tags(["img"])
        .url_schemes(["http", "https", "mailto"].into())
        .link_rel(Some("noopener noreferrer"));
    rules
});

/// The texts of the email about `job`.
pub fn render(job: &EmailJob) -> Rendered {
    let t = texts(job.language);
    let intro = t
        .intro
        .replace("{service}", &job.service_name)
        .replace("{organization}", &job.organization_name);
    let subject = format!("{}: {}", t.subject, job.subject);
    let text = format!(
        "{intro}\n\n{}\n\n{}\n\n-- \n{}\n",
        job.subject,
        job.markdown.trim_end(),
        t.footer
    );
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body>\n<p>{intro}</p>\n<h1>{heading}</h1>\n{body}\n<hr>\n<p><small>{footer}</small></p>\n</body></html>\n",
        lang = language_tag(job.language),
        title = escape(&subject),
        intro = escape(&intro),
        heading = escape(&job.subject),
        body = sanitised_html(&job.markdown),
        footer = escape(t.footer),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the email: {0}")]
pub struct ComposeError(String);

/// The email about `job`, from `from` under the name of the service and organisation.
pub fn compose(job: &EmailJob, from: &Address) -> Result<Message, ComposeError> {
    let rendered = render(job);
    let to: Address = job
        .to
        .expose()
        .parse()
        // Never the address itself in the error: it is personal data.
        .map_err(|e| ComposeError(format!("the recipient address is not usable: {e}")))?;
    let sender_name = format!("{} · {}", job.service_name, job.organization_name);
    let header = |name: &str, value: String| {
        HeaderName::new_from_ascii(name.to_string())
            .map(|name| HeaderValue::new(name, value))
            .map_err(|e| ComposeError(e.to_string()))
    };
    // The envelope is given, not derived: deriving it parses the From header back, which
    // cost as much as building the rest of the email.
    let envelope = Envelope::new(Some(from.clone()), vec![to.clone()])
        .map_err(|e| ComposeError(e.to_string()))?;
    Message::builder()
        .from(Mailbox::new(Some(sender_name), from.clone()))
        .to(Mailbox::new(None, to))
        .envelope(envelope)
        .subject(rendered.subject)
        // One Message-ID per Postino message: a relay or mailbox that sees the same email
        // twice (a retry after a lost answer) can tell it is the same one.
        .message_id(Some(format!(
            "<{}.notification@{}>",
            job.message_id,
            from.domain()
        )))
        .raw_header(header(MESSAGE_ID_HEADER, job.message_id.to_string())?)
        .raw_header(header(
            "Content-Language",
            language_tag(job.language).into(),
        )?)
        // RFC 3834: an automatic notification, so auto-responders stay quiet.
        .raw_header(header("Auto-Submitted", "auto-generated".into())?)
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| ComposeError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::email::EmailJob;

    fn job(language: Language, markdown: &str) -> EmailJob {
        let mut plan = model_plan();
        plan.message.content.markdown = markdown.to_string();
        let mut job = EmailJob::for_plan(&plan).expect("job");
        job.language = language;
        job
    }

    fn model_plan() -> model::pipeline::DeliveryPlan {
        use model::channels::{ChannelChoice, ChannelPlan};
        let fc = store::conformance::fresh_fiscal_code();
        model::pipeline::DeliveryPlan {
            message: store::conformance::sample_record(
                &fc,
                1,
                model::status::MessageStatus::Accepted,
            )
            .message,
            channels: ChannelPlan {
                email: ChannelChoice::Send,
                push: ChannelChoice::Send,
            },
            push_content: model::profile::PushContent::Anonymous,
            preferred_languages: vec![],
            email: Some(
                model::email::EmailAddress::parse("email", "citizen@example.org").expect("address"),
            ),
        }
    }

    #[test]
    fn scripts_styles_images_and_handlers_are_removed() {
        let html = sanitised_html(
            "# Titolo\n\nTesto **importante** e [link](https://example.org) e [male](javascript:alert(1)).\n\n\
             <script>alert('x')</script><style>p{}</style>\n\n![traccia](https://tracker.example/p.gif)\n\n\
             <a href=\"https://ok.example\" onclick=\"steal()\">ok</a> <iframe src=\"https://x\"></iframe>",
        );
        assert!(html.contains("<h1>Titolo</h1>"), "{html}");
        assert!(html.contains("<strong>importante</strong>"), "{html}");
        assert!(html.contains("href=\"https://example.org\""), "{html}");
        assert!(html.contains("rel=\"noopener noreferrer\""), "{html}");
        for banned in [
            "<script",
            "alert(",
            "<style",
            "<img",
            "tracker.example",
            "onclick",
            "javascript:",
            "<iframe",
        ] {
            assert!(!html.contains(banned), "{banned} in {html}");
        }
    }

    #[test]
    fn subject_intro_and_footer_follow_the_language() {
        let md = "Il bollo scade il 31 gennaio.";
        let it = render(&job(Language::Italian, md));
        assert!(
            it.subject.starts_with("Hai un nuovo messaggio: "),
            "{}",
            it.subject
        );
        assert!(it.text.contains("ti ha inviato un messaggio"));
        assert!(it.html.contains("Preferenze › Email") && it.html.contains("lang=\"it\""));
        let en = render(&job(Language::English, md));
        assert!(en.subject.starts_with("You have a new message: "));
        assert!(en.text.contains("To change your email preferences"));
        let de = render(&job(Language::German, md));
        assert!(de.subject.starts_with("Sie haben eine neue Nachricht: "));
        assert!(de.html.contains("E-Mail-Einstellungen"));
        for r in [&it, &en, &de] {
            assert!(r.text.contains(md) && r.html.contains(md));
        }
    }

    #[test]
    fn sender_text_is_escaped_in_the_html() {
        let mut j = job(Language::Italian, "testo");
        j.service_name = "<b>Servizio</b>".into();
        j.subject = "Scadenza <script>x</script>".into();
        let html = render(&j).html;
        assert!(
            !html.contains("<script>") && !html.contains("<b>Servizio"),
            "{html}"
        );
    }

    #[test]
    fn the_email_is_multipart_with_the_message_headers() {
        let j = job(Language::English, "Pay by **31 January**.");
        let from: Address = "notifiche@postino.example".parse().expect("from");
        let formatted =
            String::from_utf8(compose(&j, &from).expect("email").formatted()).expect("utf-8");
        assert!(formatted.contains("multipart/alternative"), "{formatted}");
        assert!(formatted.contains("text/plain") && formatted.contains("text/html"));
        assert!(formatted.contains(&format!("X-Postino-Message-Id: {}", j.message_id)));
        assert!(formatted.contains(&format!("<{}.notification@postino.example>", j.message_id)));
        assert!(formatted.contains("Content-Language: en"));
        assert!(formatted.contains("<notifiche@postino.example>"));
    }

    #[test]
    fn an_unusable_address_is_refused_without_showing_it() {
        let mut plan = model_plan();
        // Read back as stored: an address that slipped past the checks.
        plan.email = serde_json::from_value(serde_json::json!("not an address")).ok();
        let j = EmailJob::for_plan(&plan).expect("job");
        let err = compose(&j, &"a@b.it".parse().expect("from")).expect_err("bad address");
        assert!(!err.to_string().contains("not an address"), "{err}");
    }
}
