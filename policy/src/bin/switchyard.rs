//! The `switchyard` command: `check` a policy, `eval` requests against it, `simulate` a
//! population of requests through it, `compare` what a change serves differently.
//!
//! Exit codes: 0 success; 1 an invalid policy (`check`, `eval`) or at least one bad request
//! line (`eval`, after all lines are done); 2 a usage error or a file that cannot be read.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use switchyard_policy::{load_with, CompiledPolicy, LoadOptions, Request};

/// Writes a line to standard error; a reader that went away (`2>&1 | head`) is not an error
/// (`eprintln!` would panic).
macro_rules! say_err {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr().lock(), $($arg)*);
    }};
}

const USAGE: &str = "usage:
  switchyard check [--request-only] POLICY
                                      validate a policy; print a summary or every error;
                                      --request-only also refuses what the request-only
                                      module cannot do (settings that need the response)
  switchyard eval POLICY [REQUESTS]   evaluate JSON-lines requests (file or standard input)
  switchyard simulate POLICY [--units N] [--seed S] [--requests FILE] [--json]
                                      count decisions per flag, rule, variation and reason over
                                      N synthetic requests (default 10000, seed 1) or a
                                      JSON-lines requests file; --json prints the report as JSON
  switchyard compare OLD NEW [--units N] [--seed S] [--requests FILE] [--json]
                                      what NEW serves differently from OLD, per flag: requests
                                      moved from one variation to another, warning where units
                                      move both ways (a reordered split: units flip)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check", policy] => check(policy, &LoadOptions::default()),
        ["check", "--request-only", policy] => check(
            policy,
            &LoadOptions {
                request_only: true,
                ..LoadOptions::default()
            },
        ),
        ["eval", policy] => eval(policy, None),
        ["eval", policy, requests] => eval(policy, Some(requests)),
        ["simulate", policy, ..] if policy.starts_with("--") => {
            say_err!("switchyard: simulate needs the POLICY file before its options\n{USAGE}");
            ExitCode::from(2)
        }
        ["simulate", policy, options @ ..] => simulate(policy, options),
        ["compare", old, new, ..] if old.starts_with("--") || new.starts_with("--") => {
            say_err!("switchyard: compare needs the OLD and NEW files before its options\n{USAGE}");
            ExitCode::from(2)
        }
        ["compare", old, new, options @ ..] => compare(old, new, options),
        ["-h" | "--help" | "help"] => {
            print_out(USAGE);
            ExitCode::SUCCESS
        }
        _ => {
            say_err!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Reads and compiles a policy, printing every error on standard error.
fn load_policy(path: &str) -> Result<CompiledPolicy, ExitCode> {
    load_policy_with(path, &LoadOptions::default())
}

fn load_policy_with(path: &str, options: &LoadOptions) -> Result<CompiledPolicy, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        say_err!("switchyard: cannot read {path}: {e}");
        ExitCode::from(2)
    })?;
    load_with(&text, options).map_err(|errors| {
        for line in errors.lines() {
            say_err!("{line}");
        }
        say_err!("{path}: {} error(s); policy refused", errors.len());
        ExitCode::from(1)
    })
}

fn check(path: &str, options: &LoadOptions) -> ExitCode {
    match load_policy_with(path, options) {
        // The contract: anything but a valid policy exits 1, an unreadable file included.
        Err(_) => ExitCode::from(1),
        Ok(policy) => {
            print_out(&policy.summary());
            ExitCode::SUCCESS
        }
    }
}

/// Streams requests line by line; a bad line gets an error line and the run goes on.
fn eval(policy_path: &str, requests: Option<&str>) -> ExitCode {
    let policy = match load_policy(policy_path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let input: Box<dyn BufRead> = match requests {
        None => Box::new(io::stdin().lock()),
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => Box::new(io::BufReader::new(f)),
            Err(e) => {
                say_err!("switchyard: cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut bad_lines = 0usize;
    let source = requests.unwrap_or("standard input");
    for (n, line) in input.lines().enumerate() {
        let line_no = n + 1;
        let line = match readable_line(line, source) {
            Ok(line) => line,
            Err(code) => {
                let _ = out.flush();
                return code;
            }
        };
        let written = match line {
            Err(e) => {
                bad_lines += 1;
                error_line(&mut out, line_no, &format!("cannot read: {e}"))
            }
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => match Request::from_json(&line) {
                Ok(req) => writeln!(out, "{}", policy.eval_json(&policy.evaluate(&req))),
                Err(e) => {
                    bad_lines += 1;
                    error_line(&mut out, line_no, &e)
                }
            },
        };
        if written.is_err() {
            // Standard output closed (e.g. piped into `head`): stop quietly.
            return ExitCode::SUCCESS;
        }
    }
    if out.flush().is_err() {
        return ExitCode::SUCCESS;
    }
    bad_lines_exit(bad_lines)
}

/// The options `simulate` and `compare` share: synthetic requests (`--units`, `--seed`) or a
/// requests file, and the output format.
struct Sampling<'a> {
    units: usize,
    seed: u64,
    requests: Option<&'a str>,
    as_json: bool,
}

impl<'a> Sampling<'a> {
    fn parse(command: &str, options: &[&'a str]) -> Result<Sampling<'a>, ExitCode> {
        use switchyard_policy::simulate::{DEFAULT_SEED, DEFAULT_UNITS};
        let mut units: Option<usize> = None;
        let mut seed: Option<u64> = None;
        let mut requests: Option<&str> = None;
        let mut as_json = false;
        let mut rest = options.iter();
        let usage_error = |problem: String| {
            say_err!("switchyard: {problem}\n{USAGE}");
            ExitCode::from(2)
        };
        while let Some(&opt) = rest.next() {
            let problem = match opt {
                "--units" => whole_number(opt, rest.next())
                    .map(|n| units = Some(n))
                    .err(),
                "--seed" => whole_number(opt, rest.next()).map(|n| seed = Some(n)).err(),
                "--requests" => match rest.next() {
                    Some(f) => {
                        requests = Some(*f);
                        None
                    }
                    None => Some("--requests needs a file".to_string()),
                },
                "--json" => {
                    as_json = true;
                    None
                }
                other => Some(format!("unknown option {other:?} for {command}")),
            };
            if let Some(problem) = problem {
                return Err(usage_error(problem));
            }
        }
        if requests.is_some() && (units.is_some() || seed.is_some()) {
            return Err(usage_error(
                "--requests takes the requests from a file; --units and --seed are for \
                 synthetic ones, so give one or the other"
                    .to_string(),
            ));
        }
        Ok(Sampling {
            units: units.unwrap_or(DEFAULT_UNITS),
            seed: seed.unwrap_or(DEFAULT_SEED),
            requests,
            as_json,
        })
    }
}

/// Reads a policy file's text (exit code 2 when it cannot be read).
fn read_text(path: &str) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        say_err!("switchyard: cannot read {path}: {e}");
        ExitCode::from(2)
    })
}

/// A line read from a requests stream: its text, or why it is a bad line (it is not UTF-8;
/// the reader has moved past it, so the run goes on). Any other error ends the run with exit
/// code 2: the path is a directory, or the disk failed, and reading on would fail again on
/// every line, for ever.
fn readable_line(
    line: io::Result<String>,
    source: &str,
) -> Result<Result<String, String>, ExitCode> {
    match line {
        Ok(text) => Ok(Ok(text)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Err(e.to_string())),
        Err(e) => {
            say_err!("switchyard: cannot read {source}: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Streams a requests file in `eval`'s format to `each`, one request at a time (a million
/// lines need no more memory than one); returns how many lines were bad (each reported).
fn each_request(path: &str, mut each: impl FnMut(&Request<'_>)) -> Result<usize, ExitCode> {
    let file = std::fs::File::open(path).map_err(|e| {
        say_err!("switchyard: cannot read {path}: {e}");
        ExitCode::from(2)
    })?;
    let mut bad_lines = 0usize;
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        match readable_line(line, path)?.and_then(|l| {
            if l.trim().is_empty() {
                Ok(None)
            } else {
                Request::from_json(&l).map(Some)
            }
        }) {
            Ok(Some(req)) => each(&req),
            Ok(None) => {}
            Err(e) => {
                bad_lines += 1;
                say_err!("switchyard: line {}: {e}", n + 1);
            }
        }
    }
    Ok(bad_lines)
}

/// A report `simulate` or `compare` prints.
trait Printed {
    fn json(&self) -> String;
    fn table(&self) -> String;
}

impl Printed for switchyard_policy::simulate::Report {
    fn json(&self) -> String {
        self.to_json().to_string()
    }
    fn table(&self) -> String {
        self.table()
    }
}

impl Printed for switchyard_policy::compare::Comparison {
    fn json(&self) -> String {
        self.to_json().to_string()
    }
    fn table(&self) -> String {
        self.table()
    }
}

/// Prints a report (as JSON or as its table) with how many request lines were bad, or exits
/// with the code of what went wrong before.
fn finish(result: Result<(impl Printed, usize, bool), ExitCode>) -> ExitCode {
    let (report, bad_lines, as_json) = match result {
        Ok(done) => done,
        Err(code) => return code,
    };
    let printed = if as_json {
        writeln!(io::stdout().lock(), "{}", report.json())
    } else {
        write!(io::stdout().lock(), "{}", report.table())
    };
    if printed.is_err() {
        return ExitCode::SUCCESS;
    }
    bad_lines_exit(bad_lines)
}

/// Prints a refused policy's errors (each after `prefix`); exit code 1.
fn refused(prefix: &str, errors: &switchyard_policy::PolicyErrors) -> ExitCode {
    for line in errors.lines() {
        say_err!("{prefix}{line}");
    }
    ExitCode::from(1)
}

/// `simulate`: a table (or JSON) of what the policy decides for synthetic or given requests.
fn simulate(policy_path: &str, options: &[&str]) -> ExitCode {
    use switchyard_policy::simulate::Report;
    finish((|| {
        let sampling = Sampling::parse("simulate", options)?;
        let text = read_text(policy_path)?;
        let policy = load_policy(policy_path)?;
        Ok(match sampling.requests {
            None => {
                let report =
                    switchyard_policy::simulate::simulate(&text, sampling.units, sampling.seed)
                        .map_err(|errors| refused("", &errors))?;
                (report, 0, sampling.as_json)
            }
            Some(path) => {
                let mut report = Report::new(&policy);
                let bad = each_request(path, |req| report.add(&policy.evaluate(req)))?;
                (report, bad, sampling.as_json)
            }
        })
    })())
}

/// `compare`: what a policy change serves differently, for synthetic or given requests.
fn compare(old_path: &str, new_path: &str, options: &[&str]) -> ExitCode {
    use switchyard_policy::compare::Comparison;
    finish((|| {
        let sampling = Sampling::parse("compare", options)?;
        let (old_text, new_text) = (read_text(old_path)?, read_text(new_path)?);
        let old = load_policy(old_path)?;
        let new = load_policy(new_path)?;
        Ok(match sampling.requests {
            None => {
                let requests = switchyard_policy::compare::synthetic_requests(
                    &old_text,
                    &new_text,
                    sampling.units,
                    sampling.seed,
                )
                .map_err(|(which, errors)| refused(&format!("{which}: "), &errors))?;
                (Comparison::run(&old, &new, &requests), 0, sampling.as_json)
            }
            Some(path) => {
                let mut comparison = Comparison::new(&old, &new);
                let bad = each_request(path, |req| comparison.add(&old, &new, req))?;
                (comparison, bad, sampling.as_json)
            }
        })
    })())
}

/// The whole-number value of `option`, or what is wrong with it.
fn whole_number<T: std::str::FromStr>(option: &str, value: Option<&&str>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{option} needs a whole number"))?;
    value
        .parse()
        .map_err(|_| format!("{option} needs a whole number, not {value:?}"))
}

/// Prints to standard output; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) {
    let _ = writeln!(io::stdout().lock(), "{text}");
}

fn error_line(out: &mut impl Write, line: usize, message: &str) -> io::Result<()> {
    let obj = serde_json::json!({"line": line, "error": format!("line {line}: {message}")});
    writeln!(out, "{obj}")?;
    say_err!("switchyard: line {line}: {message}");
    Ok(())
}

/// Exit code 1 (with a count on standard error) if any request line was bad, else 0.
fn bad_lines_exit(bad_lines: usize) -> ExitCode {
    if bad_lines > 0 {
        say_err!("switchyard: {bad_lines} bad request line(s)");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
