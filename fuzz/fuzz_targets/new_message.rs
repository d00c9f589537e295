//! Any body a sender may post to `POST /api/v1/messages[/{fiscal_code}]`: parsing and
//! validating it never panics, and whatever it accepts keeps IO's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::message::NewMessage;

/// The largest amount a service may allow, so the amount rule is the message's own.
const MAX_AMOUNT: u64 = 9_999_999_999;

fuzz_target!(|data: &[u8]| {
    // The fiscal code in the body (IO's submitMessageforUserWithFiscalCodeInBody)…
    check(NewMessage::parse(data, None, MAX_AMOUNT));
    // …or in the path, taken from the input's first line.
    if let Some(split) = data.iter().position(|&b| b == b'\n') {
        if let Ok(path) = std::str::from_utf8(&data[..split]) {
            check(NewMessage::parse(
                &data[split + 1..],
                Some(path),
                MAX_AMOUNT,
            ));
        }
    }
});

fn check(parsed: Result<NewMessage, model::ValidationError>) {
    let Ok(message) = parsed else { return };
    let content = &message.content;
    assert!((10..=120).contains(&content.subject.chars().count()));
    assert!((80..=10_000).contains(&content.markdown.chars().count()));
    assert!((3_600..=604_800).contains(&message.time_to_live));
    if let Some(payment) = &content.payment_data {
        assert!((1..=9_999_999_999).contains(&payment.amount));
        let notice = payment.notice_number.as_bytes();
        assert!(notice.len() == 18 && b"0123".contains(&notice[0]));
        assert!(notice.iter().all(u8::is_ascii_digit));
    }
    // The fiscal code it carries parses again to itself.
    let fc = message.fiscal_code.as_str();
    assert_eq!(
        model::FiscalCode::parse("fiscal_code", fc).map(|again| again.as_str().to_string()),
        Ok(fc.to_string())
    );
}
