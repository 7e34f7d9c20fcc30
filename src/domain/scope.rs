//! Scope sets (RFC 6749 §3.3): space-separated, order-insensitive, compared as sets.

use std::collections::BTreeSet;
use std::fmt;

use crate::config::is_scope_token;
use crate::error::{AppError, AppResult, ErrorCode};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses a `scope` parameter; `None` if a token is malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            if !is_scope_token(token) {
                return None;
            }
            set.insert(token.to_owned());
        }
        Some(Self(set))
    }

    pub fn from_list<S: AsRef<str>>(list: &[S]) -> Self {
        Self(list.iter().map(|s| s.as_ref().to_owned()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes in both.
    pub fn intersection(&self, other: &Scopes) -> Scopes {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The scopes of `self` not in `other`, for error messages.
    pub fn missing_from(&self, other: &Scopes) -> String {
        self.0
            .difference(&other.0)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = self
            .0
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        f.write_str(&joined)
    }
}

/// A stored space-separated scope string as a list (for JSON answers).
pub fn list(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The scopes a flow grants, cut down to an assertion's `scope` claim when it has one. An
/// assertion that leaves nothing is `invalid_scope`: it asked for nothing this flow grants.
pub fn assertion_scopes(flow: &Scopes, claim: Option<&str>) -> AppResult<Scopes> {
    let Some(claim) = claim else {
        return Ok(flow.clone());
    };
    let asked = Scopes::parse(claim).ok_or_else(|| {
        AppError::protocol(
            ErrorCode::InvalidScope,
            "the assertion's scope is malformed",
        )
    })?;
    let granted = flow.intersection(&asked);
    if granted.is_empty() {
        return Err(AppError::protocol(
            ErrorCode::InvalidScope,
            "the assertion's scope names nothing this flow grants",
        ));
    }
    Ok(granted)
}

/// The `scopes` a registration request names, checked against what its type grants before the
/// claim: a subset of `granted` (absent: all of it). Anything else is `invalid_scope` naming it.
pub fn requested(granted: &Scopes, requested: Option<&[String]>) -> AppResult<Scopes> {
    let Some(list) = requested else {
        return Ok(granted.clone());
    };
    if list.iter().any(|s| !crate::config::is_scope_token(s)) {
        return Err(AppError::protocol(
            ErrorCode::InvalidScope,
            "a scope in scopes is malformed",
        ));
    }
    let asked = Scopes::from_list(list);
    if asked.is_empty() {
        return Err(AppError::protocol(
            ErrorCode::InvalidScope,
            "scopes names no scope; leave it out for every scope this registration may have",
        ));
    }
    if !asked.is_subset(granted) {
        return Err(AppError::protocol(
            ErrorCode::InvalidScope,
            format!(
                "not available to this registration before a person claims it: {}",
                asked.missing_from(granted)
            ),
        ));
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_scopes_are_a_subset_of_the_grant() {
        let granted = Scopes::parse("public.read api.read").unwrap();
        let ask = |l: &[&str]| {
            let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            requested(&granted, Some(&l))
        };
        assert_eq!(requested(&granted, None).unwrap(), granted);
        assert_eq!(ask(&["public.read"]).unwrap().to_string(), "public.read");
        for bad in [&["api.write"][..], &[], &["a\"b"]] {
            assert_eq!(
                ask(bad).unwrap_err().code(),
                Some(ErrorCode::InvalidScope),
                "{bad:?}"
            );
        }
        let nothing = requested(&Scopes::default(), Some(&["api.read".to_owned()]));
        assert!(nothing.unwrap_err().to_string().contains("api.read"));
    }

    #[test]
    fn parse_dedups_and_sorts() {
        let s = Scopes::parse("b a  b").unwrap();
        assert_eq!(s.to_string(), "a b");
        assert!(Scopes::parse("a\"b").is_none());
        assert!(Scopes::parse("").unwrap().is_empty());
    }

    #[test]
    fn subset() {
        let all = Scopes::parse("a b c").unwrap();
        assert!(Scopes::parse("a c").unwrap().is_subset(&all));
        assert!(!Scopes::parse("a d").unwrap().is_subset(&all));
        assert_eq!(Scopes::parse("a d").unwrap().missing_from(&all), "d");
    }
}
