//! Unix times as UTC calendar dates: InfluxDB writes times as RFC 3339 (`epoch` unset, time
//! literals of InfluxQL), and operators read them so; no time zone database is involved.

/// A UTC calendar date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
}

impl Civil {
    /// The UTC date and time of `unix_seconds` (Howard Hinnant's days-to-civil).
    pub fn of(unix_seconds: i64) -> Civil {
        let days = unix_seconds.div_euclid(86_400);
        let secs = unix_seconds.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        // Each value is bounded by the arithmetic above (month 1-12, day 1-31, hour < 24, ...).
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: small(month),
            day: small(day),
            hour: small(secs / 3600),
            minute: small(secs / 60 % 60),
            second: small(secs % 60),
        }
    }

    /// `2026-12-04T19:45:00Z`.
    pub fn rfc3339(&self) -> String {
        format!("{}T{}Z", self.date(), self.clock())
    }

    /// `2026-12-04`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `19:45:00`.
    pub fn clock(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_the_epoch_and_leap_days() {
        assert_eq!(Civil::of(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Civil::of(-1).rfc3339(), "1969-12-31T23:59:59Z");
        assert_eq!(Civil::of(951_782_400).date(), "2000-02-29");
        assert_eq!(Civil::of(1_765_100_700).rfc3339(), "2025-12-07T09:45:00Z");
    }
}
