//! The small grammar shared by every spec string: `name`, `name(arg)` and
//! `name:key=value,key=value`. Values print back in the same form.

use crate::{Result, SpecError};

/// Split `name(arg)` into `("name", Some("arg"))`, or `name` into `("name", None)`.
pub(crate) fn split_call<'a>(what: &'static str, s: &'a str) -> Result<(&'a str, Option<&'a str>)> {
    let s = s.trim();
    match s.find('(') {
        None => Ok((s, None)),
        Some(open) => {
            let Some(inner) = s[open + 1..].strip_suffix(')') else {
                return Err(SpecError::parse(what, s, "missing closing `)`"));
            };
            Ok((s[..open].trim(), Some(inner.trim())))
        }
    }
}

/// Parse a finite number, naming what it is for in the error.
pub(crate) fn finite(what: &'static str, input: &str, s: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| SpecError::parse(what, input, format!("`{s}` is not a number")))?;
    if !v.is_finite() {
        return Err(SpecError::parse(
            what,
            input,
            format!("`{s}` is not finite"),
        ));
    }
    Ok(v)
}

/// Reject an argument where none is expected.
pub(crate) fn no_arg(what: &'static str, input: &str, arg: Option<&str>) -> Result<()> {
    match arg {
        None => Ok(()),
        Some(_) => Err(SpecError::parse(what, input, "takes no argument")),
    }
}

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr`, so a value
/// reads and prints the same in TOML, JSON and on the command line.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;
