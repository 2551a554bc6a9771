//! Where to send a user after signing in: only back to a page of this portal.

/// Returns `next` when it is a same-origin relative path, else `None`.
///
/// Browsers treat `//evil.example`, `/\evil.example` and `https:evil.example`
/// as other sites, and strip tabs and newlines before parsing, so anything but
/// a plain path starting with a single `/` is refused.
pub fn safe_next(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let plain_path = bytes.first() == Some(&b'/')
        && bytes.get(1) != Some(&b'/')
        && bytes.get(1) != Some(&b'\\')
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && next.len() <= 2000;
    plain_path.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn keeps_local_paths() {
        assert_eq!(safe_next("/orders"), Some("/orders"));
        assert_eq!(safe_next("/orders/1?tab=docs#top"), Some("/orders/1?tab=docs#top"));
        assert_eq!(safe_next("/"), Some("/"));
    }

    #[test]
    fn refuses_other_origins() {
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "evil.example",
            "",
            "/orders\\..\\",
        ] {
            assert_eq!(safe_next(evil), None, "{evil:?} must be refused");
        }
    }
}
