//! The standard Prometheus process metrics, read from `/proc` at scrape
//! time: `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds` and `process_threads`.
//!
//! They carry no `arrakis_` prefix so the dashboards and alerts operators
//! already have for other services work unchanged. Reading `/proc` costs a
//! few syscalls per scrape, nothing per event. Off Linux the section is
//! empty.

use std::fmt::Write as _;

/// `/proc/[pid]/stat` times are in USER_HZ, which the kernel fixes at 100
/// for user space on every architecture (`sysconf(_SC_CLK_TCK)`).
const USER_HZ: f64 = 100.0;

/// A snapshot of this process as `/proc` reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessSample {
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Threads.
    pub threads: u64,
}

impl ProcessSample {
    /// Reads this process's figures; `None` where `/proc` is missing.
    #[must_use]
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mut sample = parse_stat(&stat)?;
        sample.resident_bytes = status_kib(&status, "VmRSS:").unwrap_or(0) * 1024;
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|dir| dir.count() as u64)
            .unwrap_or(0);
        sample.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| parse_max_fds(&limits));
        if let (Some(boot), Some(ticks)) = (
            std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| parse_boot_time(&s)),
            sample.start_time_seconds,
        ) {
            sample.start_time_seconds = Some(boot + ticks);
        } else {
            sample.start_time_seconds = None;
        }
        Some(sample)
    }

    /// The OpenMetrics text of the sample.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(1024);
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        );
        gauge(
            &mut out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            self.virtual_bytes as f64,
        );
        let _ = write!(
            out,
            "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds counter\n\
             process_cpu_seconds_total {}\n",
            self.cpu_seconds
        );
        gauge(
            &mut out,
            "process_open_fds",
            "Number of open file descriptors.",
            self.open_fds as f64,
        );
        if let Some(max) = self.max_fds {
            gauge(
                &mut out,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max as f64,
            );
        }
        if let Some(start) = self.start_time_seconds {
            gauge(
                &mut out,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                start,
            );
        }
        gauge(
            &mut out,
            "process_threads",
            "Number of OS threads in the process.",
            self.threads as f64,
        );
        out
    }
}

/// `text` (an OpenMetrics exposition ending in `# EOF`) with the process
/// metrics inserted before its end marker.
#[must_use]
pub fn with_process_metrics(text: String) -> String {
    let Some(sample) = ProcessSample::read() else {
        return text;
    };
    insert_before_eof(text, &sample.encode())
}

fn insert_before_eof(mut text: String, section: &str) -> String {
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, section),
        None => {
            text.push_str(section);
            text.push_str("# EOF\n");
        }
    }
    text
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
    );
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`. `start_time_seconds` holds the start in seconds since
/// boot; [`ProcessSample::read`] adds the boot time.
fn parse_stat(stat: &str) -> Option<ProcessSample> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = field(14)? + field(15)?;
    Some(ProcessSample {
        cpu_seconds: ticks as f64 / USER_HZ,
        threads: field(20)?,
        start_time_seconds: Some(field(22)? as f64 / USER_HZ),
        virtual_bytes: field(23)?,
        ..ProcessSample::default()
    })
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn parse_boot_time(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line[6..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parens() {
        // pid (comm) state ppid … utime(14) stime(15) … threads(20)
        // itrealvalue(21) starttime(22) vsize(23) rss(24)
        let stat = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 104857600 5000 18446744073709551615";
        let sample = parse_stat(stat).expect("parses");
        assert!((sample.cpu_seconds - 3.0).abs() < 1e-9, "{sample:?}");
        assert_eq!(sample.threads, 7);
        assert_eq!(sample.virtual_bytes, 104_857_600);
        assert_eq!(sample.start_time_seconds, Some(123.45));
    }

    #[test]
    fn a_truncated_stat_line_is_refused() {
        assert_eq!(parse_stat("4242 (arrakis) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_read() {
        assert_eq!(
            status_kib("Name:\tarrakis\nVmRSS:\t   10240 kB\n", "VmRSS:"),
            Some(10_240)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764800000\n"),
            Some(1_764_800_000.0)
        );
    }

    #[test]
    fn the_section_goes_before_the_end_marker() {
        let text = insert_before_eof("a 1\n# EOF\n".to_owned(), "b 2\n");
        assert_eq!(text, "a 1\nb 2\n# EOF\n");
        let text = insert_before_eof("a 1\n".to_owned(), "b 2\n");
        assert_eq!(text, "a 1\nb 2\n# EOF\n");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_memory_cpu_and_descriptors() {
        let sample = ProcessSample::read().expect("/proc is there on Linux");
        assert!(sample.resident_bytes > 0);
        assert!(sample.open_fds >= 3, "{sample:?}");
        assert!(sample.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = sample.start_time_seconds.expect("boot time is known");
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
        let text = sample.encode();
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
    }
}
