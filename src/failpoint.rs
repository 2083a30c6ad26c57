//! Named fail points for the crash tests (tests/crash.rs): `fail_point!("activate.after_insert")`
//! marks the moment right after a write to the store or the provider, where a crash must lose
//! nothing the next sweep cannot finish.
//!
//! Only a build with the Cargo feature `failpoints` (test builds, never the default or the
//! package) compiles them in. There, `ELEVATE_FAILPOINT=<name>[:<n>]`, read once, makes the
//! process kill itself with SIGKILL the `n`-th time (the first, without `:<n>`) the named point is
//! reached: no destructor runs and nothing is flushed. Without the feature the macro keeps
//! only a compile-time check that the name is listed in [`NAMES`]; no code, no string and no
//! environment read reach the binary. This module must never decide anything else.

/// Every fail point, by name. INVARIANT: each name is used at exactly one call site, and the
/// crash tests drive a scenario for each one (they iterate over this list).
pub const NAMES: &[&str] = &[
    // Requesting, and provisioning the grant (src/service/activate.rs).
    "activate.after_insert",
    "provision.before_grant",
    "provision.after_grant",
    "provision.after_record",
    "provision.failed.after_revoke",
    "provision.after_fail",
    // Deciding (src/service/review.rs).
    "approve.after_record",
    // Ending and extending (src/service/lifecycle.rs).
    "cancel.after_record",
    "extend.after_record",
    "deactivate.after_revoke",
    "deactivate.after_record",
    "revoke.after_delete",
    // The sweeper (src/service/sweep.rs).
    "timeout.after_record",
    "start.after_record",
    "recover.after_record",
    "expire.after_revoke",
    "expire.after_record",
    "expire.provisioning.after_revoke",
    "extension.timeout.after_record",
    "orphan.after_revoke",
    // Delivering notices (src/service/notify.rs).
    "deliver.after_claim",
    "deliver.after_offer",
    "deliver.after_retry_saved",
];

/// Whether `name` is in [`NAMES`] (at compile time: the macro refuses any other name).
pub const fn is_known(name: &str) -> bool {
    let mut rest = NAMES;
    while let [first, tail @ ..] = rest {
        if same(first.as_bytes(), name.as_bytes()) {
            return true;
        }
        rest = tail;
    }
    false
}

const fn same(mut a: &[u8], mut b: &[u8]) -> bool {
    loop {
        match (a, b) {
            ([], []) => return true,
            ([x, a_tail @ ..], [y, b_tail @ ..]) if *x == *y => {
                a = a_tail;
                b = b_tail;
            }
            _ => return false,
        }
    }
}

/// A crash point: aborts the process here when `ELEVATE_FAILPOINT` names it (feature
/// `failpoints` only; otherwise nothing but a compile-time check of the name).
#[cfg(feature = "failpoints")]
macro_rules! fail_point {
    ($name:literal) => {{
        const _: () = assert!($crate::failpoint::is_known($name), "fail point not listed in failpoint::NAMES");
        $crate::failpoint::reached($name);
    }};
}

/// A crash point: aborts the process here when `ELEVATE_FAILPOINT` names it (feature
/// `failpoints` only; otherwise nothing but a compile-time check of the name).
#[cfg(not(feature = "failpoints"))]
macro_rules! fail_point {
    ($name:literal) => {{
        const _: () = assert!($crate::failpoint::is_known($name), "fail point not listed in failpoint::NAMES");
    }};
}

/// The variable that arms a fail point.
#[cfg(any(test, feature = "failpoints"))]
const VARIABLE: &str = "ELEVATE_FAILPOINT";

/// The armed fail point: its name and on which hit it fires.
#[cfg(any(test, feature = "failpoints"))]
#[derive(Debug, PartialEq, Eq)]
struct Armed {
    name: String,
    nth: u64,
}

/// Reads `<name>[:<n>]`; `None` when unset or empty.
#[cfg(any(test, feature = "failpoints"))]
fn parse(value: Option<&str>) -> Result<Option<Armed>, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let (name, nth) = match value.split_once(':') {
        Some((name, n)) => match n.parse::<u64>() {
            Ok(n) if n >= 1 => (name, n),
            _ => return Err(format!("{VARIABLE} `{value}`: the count after `:` must be a whole number from 1")),
        },
        None => (value, 1),
    };
    if !is_known(name) {
        return Err(format!("{VARIABLE} `{value}`: `{name}` is not a fail point; they are: {}", NAMES.join(", ")));
    }
    Ok(Some(Armed { name: name.to_owned(), nth }))
}

/// Called by `fail_point!`: counts the hits of the armed point and aborts on the chosen one.
#[cfg(feature = "failpoints")]
pub fn reached(name: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| match parse(std::env::var(VARIABLE).ok().as_deref()) {
        Ok(armed) => armed,
        Err(message) => {
            // Bad test setup: say so and stop, rather than run without the crash asked for.
            eprintln!("elevate: {message}");
            std::process::abort();
        }
    });
    let Some(armed) = armed else { return };
    if armed.name != name {
        return;
    }
    let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if hit == armed.nth {
        // stderr is unbuffered: the line is written before the kill.
        eprintln!("elevate: fail point `{name}` reached (hit {hit}): killing the process (SIGKILL)");
        // SIGKILL, as the issue asks: nothing runs after it, not even a signal handler. `kill`
        // does it without unsafe code; should it fail, abort is the next hardest stop.
        let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fail_point_is_armed_by_name_and_optional_hit() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some("  ")), Ok(None));
        assert_eq!(
            parse(Some("activate.after_insert")),
            Ok(Some(Armed { name: "activate.after_insert".into(), nth: 1 }))
        );
        assert_eq!(
            parse(Some("revoke.after_delete:3")),
            Ok(Some(Armed { name: "revoke.after_delete".into(), nth: 3 }))
        );
    }

    #[test]
    fn a_bad_fail_point_setting_is_refused_with_its_value() {
        for bad in ["revoke.after_delete:0", "revoke.after_delete:x", "revoke.after_delete:", "no.such.point"] {
            let message = parse(Some(bad)).unwrap_err();
            assert!(message.contains(&format!("`{bad}`")), "{message}");
        }
        assert!(parse(Some("no.such.point")).unwrap_err().contains("activate.after_insert"));
    }

    #[test]
    fn every_fail_point_has_exactly_one_call_site() {
        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("failpoint.rs") {
                    out.push(path);
                }
            }
        }
        let mut files = Vec::new();
        sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let mut sites = std::collections::BTreeMap::<String, usize>::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (_, rest) in text.match_indices("fail_point!(\"").map(|(i, _)| text.split_at(i + 13)) {
                let name = rest.split('"').next().unwrap();
                *sites.entry(name.to_owned()).or_default() += 1;
            }
        }
        let listed: std::collections::BTreeMap<String, usize> = NAMES.iter().map(|n| ((*n).to_owned(), 1)).collect();
        assert_eq!(sites, listed, "fail points at their call sites vs NAMES");
    }

    #[test]
    fn names_are_unique_and_known() {
        let mut seen = std::collections::BTreeSet::new();
        for name in NAMES {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(is_known(name));
            assert!(!name.contains(':') && !name.is_empty(), "{name}");
        }
        assert!(!is_known("activate.after"));
        assert!(!is_known("activate.after_insert.x"));
    }
}
