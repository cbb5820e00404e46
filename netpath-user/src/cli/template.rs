//! `--format` templates: the subset of Go's text/template that Docker's listings use
//! (`{{.Name}}`, `{{json .}}`, `{{upper ...}}`, `table ...`), over one row (a JSON object).
use std::collections::BTreeMap;

use serde_json::Value;

/// A `--format` template: text with `{{...}}` actions over one row (a JSON object).
#[derive(Debug, PartialEq)]
pub struct Template {
    /// `table` prefix: print a header line and align columns.
    pub table: bool,
    parts: Vec<Part>,
}

#[derive(Debug, PartialEq)]
enum Part {
    Text(String),
    /// `{{FUNC .A.B}}`; an empty path is `.` itself.
    Action(Func, Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Func {
    Print,
    Json,
    Upper,
    Lower,
}

/// A template or filter the user wrote that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template: executing \"\" at <.{0}>: can't evaluate field {0}")]
    NoField(String),
    #[error("invalid filter {0:?}: expected KEY=VALUE")]
    BadFilter(String),
    #[error("invalid filter '{0}' (known: {1})")]
    UnknownFilter(String, String),
}

impl Template {
    /// Parses `--format`: `json` (one JSON object per line), `table` (the default table),
    /// `table TEMPLATE`, or a template. `\t` and `\n` stand for a tab and a newline, as in
    /// Docker.
    pub fn parse(s: &str) -> Result<Template, FormatError> {
        let s = s.replace("\\t", "\t").replace("\\n", "\n");
        if s.trim() == "json" {
            return Template::parse("{{json .}}");
        }
        let (table, body) = match s.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, s.as_str()),
        };
        let mut parts = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| FormatError::Parse(format!("unclosed action in {s:?}")))?;
            parts.push(parse_action(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts })
    }

    /// Whether the template has no actions (e.g. `table` alone: the caller's default).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The header line of a table: each field's name in capitals, `headers` renaming some.
    pub fn header(&self, headers: &BTreeMap<&str, &str>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(_, path) => {
                    let name = path.join(".");
                    match headers.get(name.as_str()) {
                        Some(h) => out.push_str(h),
                        None => out.push_str(&camel_to_upper(&name)),
                    }
                }
            }
        }
        out
    }

    /// The template applied to `row`.
    pub fn render(&self, row: &Value) -> Result<String, FormatError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(func, path) => {
                    let mut v = row;
                    for f in path {
                        v = v.get(f).ok_or_else(|| FormatError::NoField(f.clone()))?;
                    }
                    match func {
                        Func::Json => out.push_str(&v.to_string()),
                        Func::Print => out.push_str(&go_string(v)),
                        Func::Upper => out.push_str(&go_string(v).to_uppercase()),
                        Func::Lower => out.push_str(&go_string(v).to_lowercase()),
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_action(action: &str) -> Result<Part, FormatError> {
    let mut words = action.split_whitespace();
    let (func, arg) = match (words.next(), words.next(), words.next()) {
        (Some(a), None, None) => (Func::Print, a),
        (Some("json"), Some(a), None) => (Func::Json, a),
        (Some("upper"), Some(a), None) => (Func::Upper, a),
        (Some("lower"), Some(a), None) => (Func::Lower, a),
        _ => {
            return Err(FormatError::Parse(format!(
                "unsupported action {{{{{action}}}}} (supported: .Field, json, upper, lower)"
            )))
        }
    };
    if arg == "." {
        return Ok(Part::Action(func, Vec::new()));
    }
    let path = arg
        .strip_prefix('.')
        .filter(|p| !p.is_empty())
        .ok_or_else(|| FormatError::Parse(format!("bad field {arg:?}: expected .Name")))?;
    Ok(Part::Action(
        func,
        path.split('.').map(str::to_string).collect(),
    ))
}

/// `IPAddress` → `IP ADDRESS`, `Name` → `NAME`.
fn camel_to_upper(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let boundary = i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase()
                || chars.get(i + 1).is_some_and(|n| n.is_lowercase())
                    && chars[i - 1].is_uppercase());
        if boundary {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// A value as Go's `fmt` prints it in a template.
pub(super) fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}
