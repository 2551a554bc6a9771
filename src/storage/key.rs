//! Storage keys: generated, never derived from anything a user typed.

use std::fmt;

use super::StorageError;

/// A storage key: always generated (`BlobKey::random()` → `v1/3f/3f9c…`, 128 random bits in lowercase
/// hex, the first byte repeated as a directory so no directory grows huge), never derived from a
/// user's file name. [`BlobKey::parse`] accepts only the generated shape and the demo data's
/// `demo/<uuid>`, so a key read back from the database can never be a path traversal: local paths
/// are built only from parsed keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

const RANDOM_HEX: usize = 32;

impl BlobKey {
    /// A new key from 128 bits of the thread's CSPRNG.
    pub fn random() -> BlobKey {
        let bytes: [u8; RANDOM_HEX / 2] = rand::random();
        let hex = hex::encode(bytes);
        BlobKey(format!("v1/{}/{hex}", &hex[..2]))
    }

    /// Accepts `v1/<2 hex>/<32 hex>` (the directory being the first two digits) and `demo/<uuid>`
    /// (lowercase, hyphenated), and nothing else.
    pub fn parse(raw: &str) -> Result<BlobKey, StorageError> {
        if let Some(rest) = raw.strip_prefix("v1/") {
            let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if let Some((dir, name)) = rest.split_once('/')
                && dir.len() == 2
                && name.len() == RANDOM_HEX
                && lower_hex(name)
                && name.starts_with(dir)
            {
                return Ok(BlobKey(raw.to_owned()));
            }
        } else if let Some(rest) = raw.strip_prefix("demo/")
            && let Ok(id) = uuid::Uuid::try_parse(rest)
            && id.hyphenated().to_string() == rest
        {
            return Ok(BlobKey(raw.to_owned()));
        }
        Err(StorageError::InvalidKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn random_keys_parse_and_differ() {
        let a = BlobKey::random();
        let b = BlobKey::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), "v1/".len() + 2 + 1 + 32);
        assert_eq!(BlobKey::parse(a.as_str()).unwrap(), a);
        assert_eq!(&a.as_str()[3..5], &a.as_str()[6..8], "the directory is the name's first byte");
        assert_eq!(a.to_string(), a.as_str());
    }

    #[test]
    fn accepts_the_demo_shape() {
        let key = "demo/0b7c8e4e-6c1d-4f7e-9a57-3f2d1c0b9a88";
        assert_eq!(BlobKey::parse(key).unwrap().as_str(), key);
    }

    #[test]
    fn refuses_anything_else() {
        let good = "v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d7";
        assert!(BlobKey::parse(good).is_ok());
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            "v1/../../x",
            "v1/3f/../../../etc/passwd",
            "v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d7/..",
            "v1\\3f\\3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            "v1/3f\\3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            "v1/3F/3F9C0A1B2C3D4E5F60718293A4B5C6D7",
            "v1/00/3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            "v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d",
            "v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d7x",
            "v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6g7",
            "/v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            "v1//3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            " v1/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            "v2/3f/3f9c0a1b2c3d4e5f60718293a4b5c6d7",
            "demo/",
            "demo/../../etc/passwd",
            "demo/0B7C8E4E-6C1D-4F7E-9A57-3F2D1C0B9A88",
            "demo/0b7c8e4e6c1d4f7e9a573f2d1c0b9a88",
            "demo/0b7c8e4e-6c1d-4f7e-9a57-3f2d1c0b9a88/x",
            "demo\\0b7c8e4e-6c1d-4f7e-9a57-3f2d1c0b9a88",
            "invoice.pdf",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
