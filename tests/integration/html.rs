//! `run --html`: the report opened in a real headless Chromium (Debian's `chromium`
//! package; CI installs it). The page must load without a single console message
//! (errors, warnings, blocked loads under its Content-Security-Policy), its script
//! must run, and it must show every run. A screenshot is kept under
//! `target/html-report/` as a CI artifact.

use crate::FLAKY_SERVER;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

const BOUND: Duration = Duration::from_secs(120);

/// The browser to drive: `$WIRECHECK_CHROMIUM`, else `chromium` on PATH.
fn chromium() -> String {
    std::env::var("WIRECHECK_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

async fn browser(args: &[String], profile: &Path) -> Output {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args);
    crate::output_within(
        command,
        BOUND,
        "chromium (install the Debian package `chromium`)",
    )
    .await
}

/// What the browser saw: the DOM after scripts ran, and every console message.
struct Loaded {
    dom: String,
    console: Vec<String>,
}

async fn load(page: &Path) -> Loaded {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let output = browser(&["--dump-dom".into(), url], profile.path()).await;
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    Loaded {
        dom: String::from_utf8_lossy(&output.stdout).into_owned(),
        console,
    }
}

fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/html-report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn suite_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "pass.toml",
            r#"name = "echo <round> trip & back"
[servers.echo]
builtin = "echo"
[[clients]]
count = 3
script = [ { send = "hello\n" }, { expect = "hello\n" } ]
"#,
        ),
        (
            "fail.toml",
            r#"name = "coalesce mismatch"
[servers.srv]
script = [
  { wait = "both-sent" },
  { await_queued = 10 },
  { recv = { max = 1024, expect = "helloeggo3" } },
]
[[clients]]
connect = "srv"
script = [ { send = "hello" }, { send = "eggo2" }, { signal = "both-sent" } ]
"#,
        ),
        (
            "udp.toml",
            r#"name = "udp datagrams"
[servers.echo]
builtin = "echo"
proto = "udp"
[[clients]]
connect = "echo"
script = [ { send = "one" }, { expect = "one" } ]
"#,
        ),
        (
            "flaky.toml",
            r#"name = "flaky once"
retries = 1
[servers.srv]
command = ["python3", "flaky.py", "{port}"]
[[clients]]
connect = "srv"
script = [ { send = "ping\n" }, { expect = "ping\n" } ]
"#,
        ),
        ("flaky.py", FLAKY_SERVER),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_html_report_loads_cleanly_in_chromium_and_shows_every_run() {
    let dir = suite_folder();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wirecheck"));
    command
        .args(["run", ".", "--html", "out/report.html", "--pcap", "traces"])
        .current_dir(dir.path());
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let output = crate::output_within(command, BOUND, "wirecheck run --html").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.ends_with("3 passed, 1 failed\n"), "{stdout}");
    let page_path = dir.path().join("out/report.html");
    let page = std::fs::read_to_string(&page_path).unwrap();

    // Self-contained: nothing to fetch.
    for reference in ["src=", "<link", "@import"] {
        assert!(
            !page.contains(reference),
            "the page references `{reference}`"
        );
    }
    // `url(` only for the page's own SVG marker (`url(#arrowhead)`).
    assert_eq!(page.matches("url(").count(), page.matches("url(#").count());
    // Trace links point from the report's folder to the traces.
    assert!(
        page.contains("href=\"../traces/fail-run1.pcapng\""),
        "no trace link"
    );
    assert!(
        page.contains("href=\"../traces/flaky-run1.pcapng\""),
        "no link to the failed attempt's trace"
    );

    let loaded = load(&page_path).await;
    assert!(
        loaded.console.is_empty(),
        "console messages: {:#?}",
        loaded.console
    );
    // The script ran and counted a section for each of the four runs.
    assert!(
        loaded.dom.contains("data-runs-shown=\"4\""),
        "the page's script did not run"
    );
    for name in [
        "echo &lt;round&gt; trip &amp; back",
        "coalesce mismatch",
        "udp datagrams",
        "flaky once",
    ] {
        assert!(loaded.dom.contains(name), "`{name}` is not shown");
    }
    assert_eq!(loaded.dom.matches("class=\"run-row ").count(), 4);
    // Diagrams: lifelines for the actors, arrows with byte counts, the signal,
    // the failing step highlighted with its hex diff, the flaky attempt.
    assert!(loaded.dom.contains("<svg"), "no diagram");
    assert!(
        loaded.dom.contains(">5 bytes<"),
        "no write arrow with its size"
    );
    assert!(loaded.dom.contains("datagram 3 bytes"), "no datagram arrow");
    assert!(
        loaded.dom.contains("{ signal = \"both-sent\" }")
            || loaded.dom.contains("{ signal = &quot;both-sent&quot; }")
    );
    assert!(
        loaded.dom.contains("class=\"failed-step\""),
        "the failing step is not highlighted"
    );
    assert!(
        loaded.dom.contains("first difference at offset 9"),
        "no hex diff"
    );
    assert!(
        loaded.dom.contains("attempt 1 failed"),
        "the flaky run's failed attempt is missing"
    );

    // The screenshot a CI job keeps.
    let shot = artifact_dir().join("report.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page_path.canonicalize().unwrap().display());
    let output = browser(
        &[
            "--hide-scrollbars".into(),
            "--window-size=1280,2400".into(),
            format!("--screenshot={}", shot.display()),
            url,
        ],
        profile.path(),
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot"
    );
    std::fs::copy(&page_path, artifact_dir().join("report.html")).unwrap();
}

/// The control: the same check sees a script error, so a clean result means
/// something.
#[tokio::test]
async fn the_console_check_catches_a_script_error() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>x</p><script>noSuchFunction();</script></body></html>",
    )
    .unwrap();
    let loaded = load(&page).await;
    assert!(
        loaded.console.iter().any(|l| l.contains("noSuchFunction")),
        "{:#?}",
        loaded.console
    );
}
