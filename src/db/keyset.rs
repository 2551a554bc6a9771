//! The one keyset cursor: where a page of a list starts, as the sort key and the
//! id of the row at its edge, never as a number of rows to skip.
//!
//! Links written before this module keep working, so a position has three
//! spellings: `key~id` (the customers' order and document lists), `micros_id`
//! (the staff order list) and base64url of `micros.id` (the API's opaque `next`).
//! Whatever the spelling, something malformed decodes to `None`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;

/// A sort key as a cursor writes it and reads it back.
pub trait Key: Sized {
    fn write(&self) -> String;
    fn read(text: &str) -> Option<Self>;
}

/// A key in the sort's own words (parsed by the list that wrote it): 1 to 64 bytes.
impl Key for String {
    fn write(&self) -> String {
        self.clone()
    }

    fn read(text: &str) -> Option<Self> {
        (!text.is_empty() && text.len() <= 64).then(|| text.to_owned())
    }
}

/// A time as microseconds since 1970: PostgreSQL keeps microseconds, so the round trip is exact.
impl Key for OffsetDateTime {
    fn write(&self) -> String {
        self.unix_timestamp_nanos().div_euclid(1000).to_string()
    }

    fn read(text: &str) -> Option<Self> {
        let micros: i128 = text.parse().ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1000)?).ok()
    }
}

/// How a position is written into a link or an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// `key~id`, read exactly as given.
    Tilde,
    /// `key_id`; surrounding blanks are ignored.
    Underscore,
    /// base64url (unpadded) of `key.id`, opaque to its readers; surrounding blanks are ignored.
    Opaque,
}

impl Spelling {
    fn separator(self) -> char {
        match self {
            Spelling::Tilde => '~',
            Spelling::Underscore => '_',
            Spelling::Opaque => '.',
        }
    }
}

/// The position of a row: its sort key and its id (which breaks ties).
pub fn encode<K: Key>(spelling: Spelling, key: &K, id: Uuid) -> String {
    let text = format!("{}{}{id}", key.write(), spelling.separator());
    match spelling {
        Spelling::Opaque => URL_SAFE_NO_PAD.encode(text),
        Spelling::Tilde | Spelling::Underscore => text,
    }
}

/// A position as [`encode`] wrote it; `None` for anything else.
pub fn decode<K: Key>(spelling: Spelling, text: &str) -> Option<(K, Uuid)> {
    let plain = match spelling {
        Spelling::Tilde => text.to_owned(),
        Spelling::Underscore => text.trim().to_owned(),
        Spelling::Opaque => String::from_utf8(URL_SAFE_NO_PAD.decode(text.trim()).ok()?).ok()?,
    };
    // Neither a number nor an id contains a separator, so only a text key may, and the id is last.
    let (key, id) = plain.rsplit_once(spelling.separator())?;
    let id = Uuid::try_parse(id).ok()?;
    Some((K::read(key)?, id))
}

/// Where a page starts, in the list's own order: at the top, after a row (further down), or before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor<K = String> {
    First,
    After(K, Uuid),
    Before(K, Uuid),
}

impl<K: Key> Cursor<K> {
    /// The page a link asks for with `after=`/`before=` (`after` wins); anything malformed starts at the top.
    pub fn from_links(spelling: Spelling, after: Option<&str>, before: Option<&str>) -> Self {
        if let Some((key, id)) = after.and_then(|a| decode(spelling, a)) {
            Cursor::After(key, id)
        } else if let Some((key, id)) = before.and_then(|b| decode(spelling, b)) {
            Cursor::Before(key, id)
        } else {
            Cursor::First
        }
    }

    /// Whether the page is read against the list's order (towards the top).
    pub fn backwards(&self) -> bool {
        matches!(self, Cursor::Before(..))
    }

    /// Whether pages lie (above, below) this one, given whether one more row than a page was found.
    pub fn neighbours(&self, more: bool) -> (bool, bool) {
        match self {
            Cursor::First => (false, more),
            Cursor::After(..) => (true, more),
            Cursor::Before(..) => (more, true),
        }
    }
}

impl Cursor<String> {
    /// `key~id`, as the customers' lists carry it. Anything malformed starts at the top.
    pub fn parse(after: Option<&str>, before: Option<&str>) -> Self {
        Cursor::from_links(Spelling::Tilde, after, before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips_and_refuses_garbage() {
        let id = Uuid::from_u128(7);
        let at = time::macros::datetime!(2026-05-31 08:00:00.123456 UTC);
        for spelling in [Spelling::Tilde, Spelling::Underscore, Spelling::Opaque] {
            assert_eq!(decode(spelling, &encode(spelling, &at, id)), Some((at, id)));
            assert_eq!(decode::<OffsetDateTime>(spelling, "nonsense"), None);
        }
        assert_eq!(encode(Spelling::Underscore, &at, id), format!("1780214400123456_{id}"));
        assert_eq!(decode::<OffsetDateTime>(Spelling::Underscore, "12_not-a-uuid"), None);
        assert_eq!(decode::<OffsetDateTime>(Spelling::Opaque, &URL_SAFE_NO_PAD.encode("12.not-a-uuid")), None);
        assert_eq!(decode::<String>(Spelling::Tilde, &format!("ORD~1~{id}")), Some(("ORD~1".to_owned(), id)));
    }
}
