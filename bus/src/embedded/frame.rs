//! How anything the embedded log keeps on disk is framed: a length, a CRC-32 of the body, then
//! the body. A crash can leave the last frame of a file half written; the CRC (and a length
//! running past the end) is how recovery tells where the intact part ends.

/// Bytes before each body: its length and its CRC-32, both little-endian `u32`.
pub const HEADER: usize = 8;

/// The largest body a frame may carry. Bounds what one bad length field can make a reader
/// allocate, and what one record can weigh.
pub const MAX_BODY: usize = 16 << 20;

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame: its body, and the bytes the frame takes with its header.
    Frame { body: &'a [u8], len: usize },
    /// The start of a frame of `len` bytes (header included) that runs past the buffer.
    Partial { len: usize },
    /// Not a frame: a torn write, or damage.
    Invalid(String),
}

/// Appends one frame whose body `write_body` writes to `out`.
pub fn push(out: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    write_body(out);
    let body_len = out.len() - start - HEADER;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    // Callers check sizes against MAX_BODY before they frame; u32 holds it.
    let len = u32::try_from(body_len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the frame at the start of `buf`. An empty buffer is `Partial { len: HEADER }`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some((len, crc)) = buf
        .get(..HEADER)
        .map(|h| (le_u32(&h[..4]), le_u32(&h[4..])))
    else {
        return Parsed::Partial { len: HEADER };
    };
    let body_len = len as usize;
    // Every body holds something, so zeroes (a tail the disk never got) are no frame.
    if body_len == 0 {
        return Parsed::Invalid("empty frame".into());
    }
    if body_len > MAX_BODY {
        return Parsed::Invalid(format!("frame length {body_len} exceeds {MAX_BODY}"));
    }
    let Some(body) = buf.get(HEADER..HEADER + body_len) else {
        return Parsed::Partial {
            len: HEADER + body_len,
        };
    };
    if crc32fast::hash(body) != crc {
        return Parsed::Invalid("checksum mismatch".into());
    }
    Parsed::Frame {
        body,
        len: HEADER + body_len,
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(b);
    u32::from_le_bytes(word)
}

/// Reads fields off a frame body, failing instead of panicking on a short or damaged one.
#[derive(Debug)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self { rest: body }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(format!("field of {n} bytes runs past the frame"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(le_u32(self.bytes(4)?))
    }

    pub fn i64(&mut self) -> Result<i64, String> {
        let mut word = [0; 8];
        word.copy_from_slice(self.bytes(8)?);
        Ok(i64::from_le_bytes(word))
    }

    /// A `u16`-length-prefixed UTF-8 string.
    pub fn short_str(&mut self) -> Result<&'a str, String> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.bytes(n)?).map_err(|e| e.to_string())
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// Writes a `u16`-length-prefixed string; the caller has checked it fits.
pub fn put_short_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push(&mut out, |b| b.extend_from_slice(body));
        out
    }

    #[test]
    fn a_frame_reads_back_and_its_length_covers_the_header() {
        let mut buf = framed(b"hello");
        buf.extend_from_slice(&framed(b"world"));
        let Parsed::Frame { body, len } = parse(&buf) else {
            panic!("first frame")
        };
        assert_eq!((body, len), (&b"hello"[..], HEADER + 5));
        assert_eq!(
            parse(&buf[len..]),
            Parsed::Frame {
                body: b"world",
                len: HEADER + 5
            }
        );
    }

    #[test]
    fn a_torn_frame_is_partial_and_says_how_long_it_will_be() {
        let buf = framed(b"hello");
        assert_eq!(parse(&buf[..3]), Parsed::Partial { len: HEADER });
        assert_eq!(
            parse(&buf[..HEADER + 2]),
            Parsed::Partial { len: HEADER + 5 }
        );
        assert_eq!(parse(&[]), Parsed::Partial { len: HEADER });
    }

    #[test]
    fn a_flipped_bit_or_an_absurd_length_is_invalid() {
        let mut buf = framed(b"hello");
        buf[HEADER + 1] ^= 1;
        assert!(matches!(parse(&buf), Parsed::Invalid(m) if m.contains("checksum")));
        let mut huge = framed(b"x");
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&huge), Parsed::Invalid(m) if m.contains("exceeds")));
        // Zeroes, as a preallocated or half-synced tail reads, are no frame either.
        assert!(matches!(parse(&[0; 16]), Parsed::Invalid(_)));
    }

    #[test]
    fn fields_fail_on_a_short_body_instead_of_panicking() {
        let mut f = Fields::new(&[1, 0, 0]);
        assert_eq!(f.u16(), Ok(1));
        assert!(f.u32().is_err());
        let mut g = Fields::new(&[5, 0, b'a']);
        assert!(g.short_str().is_err());
        let mut h = Fields::new(&[1, 0, 0xff]);
        assert!(h.short_str().is_err(), "not UTF-8");
    }
}
