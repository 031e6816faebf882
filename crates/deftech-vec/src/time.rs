//! UTC calendar times from Unix milliseconds, for manifests, API answers and audit records
//! (UTC only: no time-zone database).

/// A UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, from 1.
    pub day: u32,
    /// Hour, 0 to 23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Millisecond.
    pub millis: u32,
}

impl Utc {
    /// The time `ms` milliseconds after 1970-01-01T00:00:00Z.
    pub fn from_unix_ms(ms: u64) -> Utc {
        let secs = ms / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: (ms % 1000) as u32,
        }
    }

    /// The current time.
    pub fn now() -> Utc {
        Utc::from_unix_ms(crate::snapshot::now_ms())
    }

    /// `2026-11-25T22:41:07` (no zone, whole seconds: Qdrant's `creation_time`).
    pub fn iso_seconds(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// RFC 3339 with milliseconds: `2026-11-25T22:41:07.123Z`.
    pub fn rfc3339_millis(&self) -> String {
        format!("{}.{:03}Z", self.iso_seconds(), self.millis)
    }
}

#[cfg(test)]
mod tests {
    use super::Utc;

    #[test]
    fn calendar_dates() {
        assert_eq!(
            Utc::from_unix_ms(0).rfc3339_millis(),
            "1970-01-01T00:00:00.000Z"
        );
        // A leap day.
        assert_eq!(
            Utc::from_unix_ms(1_709_210_096_789).rfc3339_millis(),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(
            Utc::from_unix_ms(1_798_761_599_000).iso_seconds(),
            "2026-12-31T23:59:59"
        );
        assert_eq!(
            Utc::from_unix_ms(951_782_400_000).iso_seconds(),
            "2000-02-29T00:00:00"
        );
    }
}
