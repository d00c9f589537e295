//! A [`Record`] as the body of a frame in a segment file: the key, the headers, then the
//! payload. The record's offset is not stored: it is the segment's base offset plus the
//! record's position in the segment, so publishers can encode their records before the
//! writer has numbered them.

use super::frame::{self, Fields};
use crate::{BusError, Record};

/// Appends `records` to `out` as frames.
pub fn encode_all(records: &[Record], out: &mut Vec<u8>) -> Result<(), BusError> {
    let mut size = 0;
    for record in records {
        size += frame::HEADER + check(record)?;
    }
    out.reserve(size);
    for record in records {
        frame::push(out, |body| {
            body.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
            body.extend_from_slice(&record.key);
            body.extend_from_slice(&(record.headers.len() as u16).to_le_bytes());
            for (name, value) in &record.headers {
                frame::put_short_str(body, name);
                body.extend_from_slice(&(value.len() as u32).to_le_bytes());
                body.extend_from_slice(value.as_bytes());
            }
            body.extend_from_slice(&record.payload);
        });
    }
    Ok(())
}

/// Refuses what the format cannot hold, before anything is written; returns the size of the
/// record's frame body.
fn check(record: &Record) -> Result<usize, BusError> {
    let too_many = record.headers.len() > usize::from(u16::MAX);
    let long_name = record
        .headers
        .iter()
        .any(|(name, _)| name.len() > usize::from(u16::MAX));
    if too_many || long_name {
        return Err(BusError::InvalidRecord(
            "more than 65535 headers, or a header name over 65535 bytes".into(),
        ));
    }
    let size = 4
        + record.key.len()
        + 2
        + record
            .headers
            .iter()
            .map(|(n, v)| 2 + n.len() + 4 + v.len())
            .sum::<usize>()
        + record.payload.len();
    if size > frame::MAX_BODY {
        return Err(BusError::InvalidRecord(format!(
            "a record of {size} bytes exceeds the embedded log's limit of {} bytes",
            frame::MAX_BODY
        )));
    }
    Ok(size)
}

/// Reads a record back from a frame body.
pub fn decode(body: &[u8]) -> Result<Record, String> {
    let mut f = Fields::new(body);
    let key_len = f.u32()? as usize;
    let key = f.bytes(key_len)?.to_vec();
    let count = f.u16()?;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = f.short_str()?.to_string();
        let value_len = f.u32()? as usize;
        let value = std::str::from_utf8(f.bytes(value_len)?)
            .map_err(|e| e.to_string())?
            .to_string();
        headers.push((name, value));
    }
    Ok(Record {
        key,
        headers,
        payload: f.rest().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::frame::{parse, Parsed};

    fn one(record: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        encode_all(std::slice::from_ref(record), &mut out).expect("encode");
        out
    }

    fn body(buf: &[u8]) -> &[u8] {
        match parse(buf) {
            Parsed::Frame { body, .. } => body,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_read_back_whole_with_headers_and_empty_parts() {
        let mut full = Record::new(b"citizen".to_vec(), b"{\"a\":1}".to_vec());
        full.headers = vec![
            ("postino-error".into(), "ü 429".into()),
            ("n".into(), String::new()),
        ];
        for record in [
            full,
            Record::default(),
            Record::new(vec![0, 255], Vec::new()),
        ] {
            assert_eq!(decode(body(&one(&record))), Ok(record));
        }
    }

    #[test]
    fn a_damaged_body_is_an_error_not_a_panic() {
        let mut record = Record::new(b"k".to_vec(), b"p".to_vec());
        record.headers.push(("h".into(), "v".into()));
        let frame = one(&record);
        let body = body(&frame);
        let payload_at = body.len() - 1;
        for cut in 0..payload_at {
            // A cut in the payload only shortens it: the frame's checksum catches that.
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_len = body.to_vec();
        bad_len[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&bad_len).is_err());
        let mut bad_utf8 = body.to_vec();
        let value_at = 4 + 1 + 2 + 2 + 1 + 4;
        bad_utf8[value_at] = 0xff;
        assert!(decode(&bad_utf8).is_err());
    }

    #[test]
    fn a_record_over_the_limit_is_refused_before_anything_is_written() {
        let big = Record::new(b"k".to_vec(), vec![0; frame::MAX_BODY]);
        let mut out = Vec::new();
        let err = encode_all(&[Record::default(), big], &mut out).expect_err("too large");
        assert!(!err.is_retryable());
        assert!(matches!(err, BusError::InvalidRecord(m) if m.contains("limit")));
    }
}
