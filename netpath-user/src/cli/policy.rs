//! `netpath policy`: Kubernetes NetworkPolicy, in kubectl's words — `apply -f`, `ls`,
//! `inspect`, `rm` — and `check`, which explains a verdict without sending a packet.
use std::{io::Read as _, process::ExitCode};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::{
    each, exit,
    format::{print_rows, ListArgs},
    InspectArgs,
};
use crate::{
    api::{client::Client, CheckSide, PolicyApply, PolicyCheck, PolicyRemove},
    policy::DEFAULT_NAMESPACE,
};

#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// Apply NetworkPolicy (networking.k8s.io/v1) and Namespace (v1) manifests, YAML or JSON,
    /// several documents to a file: the whole file or nothing.
    #[command(
        after_help = "Examples:\n  netpath policy apply -f policies.yaml\n  kubectl create networkpolicy ... -o yaml --dry-run=client | netpath policy apply -f -"
    )]
    Apply {
        /// The file, or - for standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: String,
    },
    /// List network policies: of one namespace (default: default), or of all.
    #[command(
        alias = "list",
        after_help = "Examples:\n  netpath policy ls\n  netpath policy ls -A\n  netpath policy ls -n shop -q\n\nTemplate fields: Namespace, Name, PolicyTypes, Selected, Manifest."
    )]
    Ls {
        /// This namespace's policies [default: default].
        #[arg(short, long, value_name = "NS", conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show policies of a namespace as JSON (each is tried).
    #[command(
        after_help = "Examples:\n  netpath policy inspect db\n  netpath policy inspect -n shop db --format '{{json .Manifest.spec}}'"
    )]
    Inspect {
        /// The policies' namespace.
        #[arg(short, long, value_name = "NS", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        #[command(flatten)]
        args: InspectArgs,
    },
    /// Remove policies of a namespace (all must exist, else none goes).
    #[command(
        alias = "remove",
        after_help = "Examples:\n  netpath policy rm -n shop db web"
    )]
    Rm {
        /// The policies' namespace.
        #[arg(short, long, value_name = "NS", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// The policies' names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Which policies apply to a flow from FROM to TO (endpoints, or addresses of either
    /// family; with an IPv6 address, an endpoint stands for its IPv6 one) on a port, and what
    /// they decide, without sending a packet.
    #[command(
        after_help = "Examples:\n  netpath policy check web db 5432\n  netpath policy check 192.0.2.7 web 53/udp\n  netpath policy check 2001:db8::7 web 80"
    )]
    Check {
        /// The source: an endpoint's name, or an address.
        from: String,
        /// The destination: an endpoint's name, or an address.
        to: String,
        /// The destination port, and tcp (default) or udp.
        #[arg(value_name = "PORT[/PROTO]")]
        port: String,
    },
}

fn side_line(dir: &str, arrow: &str, other: &str, s: &CheckSide) -> String {
    let who = s.endpoint.as_deref().unwrap_or("(not an endpoint)");
    let mut line = format!("{dir} {who} {arrow} {other}: ");
    if !s.selected_by.is_empty() {
        line += &format!("selected by {}; ", s.selected_by.join(", "));
    }
    line += match s.verdict.as_str() {
        "open" => "no policy selects it: open".to_string(),
        "host" => "the host's traffic: always allowed".to_string(),
        "allowed" => format!("allowed by {}", s.allowed_by.as_deref().unwrap_or("?")),
        _ => "denied: no rule of these policies allows it".to_string(),
    }
    .as_str();
    line
}

pub async fn run(client: &Client, cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Apply { file } => {
            let mut manifests = String::new();
            if file == "-" {
                std::io::stdin().read_to_string(&mut manifests)?;
            } else {
                manifests =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
            }
            for line in client.apply_policies(&PolicyApply { manifests }).await? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Ls {
            namespace,
            all_namespaces,
            list,
        } => {
            let ns = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
            let rows: Vec<Value> = client
                .policies()
                .await?
                .into_iter()
                .filter(|p| all_namespaces || p.namespace == ns)
                .map(|p| {
                    let mut v = serde_json::to_value(&p).unwrap_or_default();
                    v["ID"] = json!(p.name);
                    v["Types"] = json!(p.policy_types.join(","));
                    v["Endpoints"] = json!(p.selected.join(","));
                    v
                })
                .collect();
            let default = if all_namespaces {
                "table {{.Namespace}}\t{{.Name}}\t{{.Types}}\t{{.Endpoints}}"
            } else {
                "table {{.Name}}\t{{.Types}}\t{{.Endpoints}}"
            };
            let headers = [
                ("Types", "POLICY TYPES"),
                ("Endpoints", "SELECTED ENDPOINTS"),
            ];
            print!(
                "{}",
                print_rows(
                    &rows,
                    list.quiet,
                    list.format.as_deref(),
                    default,
                    "ID",
                    &headers.into_iter().collect()
                )?
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Inspect { namespace, args } => {
            let all = client.policies().await?;
            let (found, failed) = each(&args.names, |n| {
                let p = all
                    .iter()
                    .find(|p| p.namespace == namespace && p.name == n)
                    .cloned();
                let ns = namespace.clone();
                async move {
                    p.ok_or_else(|| {
                        crate::api::client::ClientError::Refused(format!(
                            "no such network policy: {ns}/{n}"
                        ))
                    })
                }
            })
            .await;
            match &args.format {
                None => println!("{}", serde_json::to_string_pretty(&found)?),
                Some(f) => {
                    let t = super::template::Template::parse(f)?;
                    for v in &found {
                        println!("{}", t.render(&serde_json::to_value(v)?)?);
                    }
                }
            }
            Ok(exit(failed))
        }
        PolicyCmd::Rm { namespace, names } => {
            client
                .remove_policies(&PolicyRemove {
                    namespace,
                    names: names.clone(),
                })
                .await?;
            for n in names {
                println!("{n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Check { from, to, port } => {
            let (port, proto) = match port.split_once('/') {
                Some((p, proto)) => (p, proto.to_string()),
                None => (port.as_str(), "tcp".to_string()),
            };
            let Ok(port) = port.parse::<u16>() else {
                bail!("{port:?} is not a port: expected PORT[/tcp|/udp]");
            };
            let v = client
                .check_policy(&PolicyCheck {
                    from: from.clone(),
                    to: to.clone(),
                    port,
                    proto: proto.clone(),
                })
                .await?;
            println!("{}", side_line("egress ", "->", &to, &v.egress));
            println!("{}", side_line("ingress", "<-", &from, &v.ingress));
            let verdict = if v.allowed { "allowed" } else { "denied" };
            println!("{from} -> {to} {port}/{proto}: {verdict}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
