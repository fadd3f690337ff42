//! The `Authorization: Bearer <token>` header, read one way everywhere (the
//! API, the media edge, the MCP endpoint). RFC 9110 makes the scheme name
//! case-insensitive and lets spaces separate it from the token.

/// The token of a Bearer `Authorization` header value; `None` for another
/// scheme, an empty token or one with spaces inside.
pub fn token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_one_word() {
        assert_eq!(token("Bearer lxxn_test_abc"), Some("lxxn_test_abc"));
        assert_eq!(token("bearer lxxn_test_abc"), Some("lxxn_test_abc"));
        assert_eq!(token("BEARER   lxxn_test_abc  "), Some("lxxn_test_abc"));
        assert_eq!(token("Basic dXNlcjpwdw=="), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer a b"), None);
        assert_eq!(token("Bearerlxxn"), None);
        assert_eq!(token(""), None);
    }
}
