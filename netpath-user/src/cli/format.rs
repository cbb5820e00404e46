//! How listings are printed, in Docker's conventions: aligned tables (`tabwriter`), `-q`
//! (ids only), `--format` (`json`, or a template of [`super::template`]), `--filter
//! KEY=VALUE`, and published ports collapsed into ranges.
use std::{collections::BTreeMap, fmt::Write as _, io::Write as _};

use serde_json::Value;

use super::template::go_string;
pub use super::template::{FormatError, Template};
use crate::{api::Port, ports::Proto};

/// `--filter KEY=VALUE` flags, checked against the keys a listing knows.
#[derive(Debug, Default)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    pub fn parse(raw: &[String], known: &[&str]) -> Result<Filters, FormatError> {
        let mut out = Vec::new();
        for f in raw {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| FormatError::BadFilter(f.clone()))?;
            let k = k.trim().to_lowercase();
            if !known.contains(&k.as_str()) {
                return Err(FormatError::UnknownFilter(k, known.join(", ")));
            }
            out.push((k, v.to_string()));
        }
        Ok(Filters(out))
    }

    /// Docker's rule: a row passes when, for every key given, one of its values matches.
    pub fn matches(&self, test: impl Fn(&str, &str) -> bool) -> bool {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            self.0
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(k, v)| test(k, v))
        })
    }
}

/// `label=KEY` or `label=KEY=VALUE` against `labels`.
pub fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// `k=v,k2=v2`, as `docker ls` shows labels.
pub fn labels_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Published ports as `docker ps` shows them, runs collapsed:
/// `0.0.0.0:8000-8002->80-82/tcp`, and consecutive host ports on one container port as
/// `0.0.0.0:8000-17999->80/tcp` (10,000 ports on one line).
pub fn ports_summary(ports: &[Port]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_by_key(|p| (p.ip, p.proto, p.public_port, p.private_port));
    let mut runs: Vec<(Port, Port)> = Vec::new();
    for p in sorted {
        if let Some((first, last)) = runs.last_mut() {
            let same_kind = first.ip == p.ip && first.proto == p.proto;
            let next_host = p.public_port == last.public_port.wrapping_add(1);
            let one_to_one =
                first.private_port != last.private_port || first.public_port == last.public_port;
            let container_step = p.private_port == last.private_port.wrapping_add(1);
            let same_container =
                p.private_port == last.private_port && first.private_port == last.private_port;
            let extends =
                same_kind && next_host && ((one_to_one && container_step) || same_container);
            if extends {
                *last = p;
                continue;
            }
        }
        runs.push((p, p));
    }
    let proto = |p: Proto| p.to_string();
    runs.iter()
        .map(|(a, b)| {
            let range = |x: u16, y: u16| {
                if x == y {
                    x.to_string()
                } else {
                    format!("{x}-{y}")
                }
            };
            let ip = match a.ip {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            format!(
                "{ip}:{}->{}/{}",
                range(a.public_port, b.public_port),
                range(a.private_port, b.private_port),
                proto(a.proto)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes lines through an elastic tab writer: columns separated by tabs come out aligned
/// however long a name is.
pub fn aligned(lines: &[String]) -> String {
    let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(3);
    for l in lines {
        let _ = writeln!(tw, "{l}"); // into memory: cannot fail
    }
    let _ = tw.flush(); // into memory: cannot fail
    String::from_utf8(tw.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Prints one object as `--format` asks (`json`, or a Go template); false when no format was
/// asked for, so the caller prints its own text.
pub fn print_formatted(
    value: &impl serde::Serialize,
    format: Option<&str>,
) -> anyhow::Result<bool> {
    let Some(f) = format else {
        return Ok(false);
    };
    let v = serde_json::to_value(value)?;
    if f.trim() == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", Template::parse(f)?.render(&v)?);
    }
    Ok(true)
}

/// `ls` options shared by endpoints and networks (Docker's).
#[derive(clap::Args)]
pub struct ListArgs {
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Go template (`{{.Name}}`, `{{json .}}`, `table ...`) or `json`.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// Filter KEY=VALUE (repeatable).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Full ids.
    #[arg(long)]
    pub no_trunc: bool,
}

/// Prints `rows` (each a JSON object, `ID` their id) per `args`, through `default` (a
/// `table` template) unless `--format` says otherwise; `headers` renames columns.
pub fn print_list(
    rows: &[Value],
    args: &ListArgs,
    default: &str,
    headers: &[(&str, &str)],
) -> Result<(), FormatError> {
    let headers: BTreeMap<&str, &str> = headers.iter().copied().collect();
    let out = print_rows(
        rows,
        args.quiet,
        args.format.as_deref(),
        default,
        "ID",
        &headers,
    )?;
    print!("{out}");
    Ok(())
}

/// Prints `rows` (each a JSON object) per the listing options: `-q` prints `id_field`
/// only; a template prints each row through it (aligned under a header when it starts with
/// `table`); without one, `default` (a `table` template) is used.
pub fn print_rows(
    rows: &[Value],
    quiet: bool,
    format: Option<&str>,
    default: &str,
    id_field: &str,
    headers: &BTreeMap<&str, &str>,
) -> Result<String, FormatError> {
    let mut out = String::new();
    if quiet {
        for r in rows {
            // Into a String: cannot fail.
            let _ = writeln!(
                out,
                "{}",
                r.get(id_field).map(go_string).unwrap_or_default()
            );
        }
        return Ok(out);
    }
    let mut t = Template::parse(format.unwrap_or(default))?;
    if t.table && t.is_empty() {
        t = Template::parse(default)?;
    }
    let mut lines = Vec::new();
    if t.table {
        lines.push(t.header(headers));
    }
    for r in rows {
        lines.push(t.render(r)?);
    }
    if t.table {
        Ok(aligned(&lines))
    } else {
        for l in lines {
            let _ = writeln!(out, "{l}"); // into a String: cannot fail
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    #[test]
    fn templates() {
        let row = json!({"Name": "web", "ID": "abc", "Labels": {"a": "1"}, "Internal": false});
        let t = Template::parse("{{.Name}}: {{.ID}}").unwrap();
        assert_eq!(t.render(&row).unwrap(), "web: abc");
        let t = Template::parse("{{json .}}").unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&t.render(&row).unwrap()).unwrap(),
            row
        );
        assert_eq!(
            Template::parse("json").unwrap().render(&row).unwrap(),
            row.to_string()
        );
        assert_eq!(
            Template::parse("{{.Labels}} {{.Internal}} {{upper .Name}}")
                .unwrap()
                .render(&row)
                .unwrap(),
            "map[a:1] false WEB"
        );
        assert_eq!(
            Template::parse("{{ .Labels.a }}")
                .unwrap()
                .render(&row)
                .unwrap(),
            "1"
        );
        assert_eq!(
            Template::parse("{{.Nope}}").unwrap().render(&row),
            Err(FormatError::NoField("Nope".into()))
        );
        assert!(Template::parse("{{.Name").is_err());
        assert!(Template::parse("{{range .}}").is_err());
        let t = Template::parse("table {{.ID}}\\t{{.IPAddress}}").unwrap();
        assert!(t.table);
        assert_eq!(t.header(&BTreeMap::new()), "ID\tIP ADDRESS");
    }

    #[test]
    fn filters() {
        let f = Filters::parse(
            &["name=a".into(), "name=b".into(), "driver=x".into()],
            &["name", "driver"],
        )
        .unwrap();
        assert!(f.matches(|k, v| (k == "name" && v == "b") || (k == "driver" && v == "x")));
        assert!(!f.matches(|k, v| k == "name" && v == "b"));
        assert!(matches!(
            Filters::parse(&["nope=1".into()], &["name"]),
            Err(FormatError::UnknownFilter(..))
        ));
        assert!(matches!(
            Filters::parse(&["name".into()], &["name"]),
            Err(FormatError::BadFilter(_))
        ));
        let labels = [("team".to_string(), "web".to_string())].into();
        assert!(label_matches(&labels, "team"));
        assert!(label_matches(&labels, "team=web"));
        assert!(!label_matches(&labels, "team=db"));
    }

    fn port(host: u16, container: u16) -> Port {
        Port {
            ip: Ipv4Addr::UNSPECIFIED.into(),
            private_port: container,
            public_port: host,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn port_ranges_collapse() {
        let many: Vec<Port> = (8000..18000).map(|h| port(h, 80)).collect();
        assert_eq!(ports_summary(&many), "0.0.0.0:8000-17999->80/tcp");
        let one_to_one: Vec<Port> = (0..3).map(|i| port(8000 + i, 80 + i)).collect();
        assert_eq!(ports_summary(&one_to_one), "0.0.0.0:8000-8002->80-82/tcp");
        let mixed = [
            port(8080, 80),
            port(9000, 90),
            port(9001, 91),
            port(9002, 5),
        ];
        assert_eq!(
            ports_summary(&mixed),
            "0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9001->90-91/tcp, 0.0.0.0:9002->5/tcp"
        );
        let mut udp = port(53, 53);
        udp.proto = Proto::Udp;
        assert_eq!(
            ports_summary(&[port(53, 53), udp]),
            "0.0.0.0:53->53/tcp, 0.0.0.0:53->53/udp"
        );
    }

    #[test]
    fn tables_align_long_names() {
        let out = aligned(&[
            "NAME\tIP".into(),
            "a-very-long-endpoint-name-indeed\t10.0.0.2".into(),
            "b\t10.0.0.3".into(),
        ]);
        let cols: Vec<usize> = out
            .lines()
            .map(|l| l.find("10.0").or_else(|| l.find("IP")).unwrap())
            .collect();
        assert!(cols.windows(2).all(|w| w[0] == w[1]), "{out}");
    }
}
