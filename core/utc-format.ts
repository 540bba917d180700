/**
 * UTC timestamps as text, computed from the epoch milliseconds instead of
 * through Date's string methods.
 *
 * Why: on Node 20 (V8 11.3) the first Date#toISOString, #toUTCString,
 * #toString or #toJSON in a process asks ICU for the local time zone and
 * its display name, and ICU maps its zone and locale data to answer: 0.9
 * MiB of resident memory with TZ=UTC, 1.5 MiB with TZ unset, measured in a
 * bare Node with tls and http loaded (docs/performance.md, session 13). A
 * sidecar runs next to every workload and formats a timestamp in its first
 * log line, so every sidecar paid it. The output is byte for byte what
 * those methods give for years 0 to 9999; outside them, which no
 * timestamp of ours reaches, Date formats (and throws for NaN as it does).
 */

const MS_PER_DAY = 86_400_000;
/** Date's range, ±8.64e15 ms (ECMA-262 TimeClip). */
const MAX_TIME = 8.64e15;
/** 0000-01-01T00:00:00.000Z and 10000-01-01T00:00:00.000Z. */
const FIRST_FOUR_DIGIT_YEAR_MS = -62_167_219_200_000;
const FIRST_FIVE_DIGIT_YEAR_MS = 253_402_300_800_000;

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

interface UtcFields {
  year: number;
  /** 1–12. */
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  millisecond: number;
  /** 0 = Sunday. */
  weekday: number;
}

/** The calendar fields of a time value inside the four-digit years (days-to-civil, proleptic Gregorian). */
function utcFields(ms: number): UtcFields {
  const days = Math.floor(ms / MS_PER_DAY);
  let rest = ms - days * MS_PER_DAY;
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const minute = Math.floor(rest / 60_000);
  rest -= minute * 60_000;
  const second = Math.floor(rest / 1000);
  // Shift the epoch to 0000-03-01 so that leap days fall at the end of a 400-year era.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra -
      Math.floor(dayOfEra / 1460) +
      Math.floor(dayOfEra / 36_524) -
      Math.floor(dayOfEra / 146_096)) /
      365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthFromMarch = Math.floor((5 * dayOfYear + 2) / 153);
  const month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9;
  return {
    year: yearOfEra + era * 400 + (month <= 2 ? 1 : 0),
    month,
    day: dayOfYear - Math.floor((153 * monthFromMarch + 2) / 5) + 1,
    hour,
    minute,
    second,
    millisecond: rest - second * 1000,
    // 1970-01-01 was a Thursday.
    weekday: (((days + 4) % 7) + 7) % 7,
  };
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

function three(n: number): string {
  return n < 10 ? `00${n}` : n < 100 ? `0${n}` : String(n);
}

function four(n: number): string {
  return n < 1000 ? String(n).padStart(4, '0') : String(n);
}

/** A time value as Date would hold it (TimeClip), or undefined where Date must format (or throw). */
function fourDigitYearTime(ms: number): number | undefined {
  if (!Number.isFinite(ms) || Math.abs(ms) > MAX_TIME) return undefined;
  const t = Math.trunc(ms);
  return t >= FIRST_FOUR_DIGIT_YEAR_MS && t < FIRST_FIVE_DIGIT_YEAR_MS ? t : undefined;
}

/** `new Date(ms).toISOString()` (now by default): `2026-11-22T09:46:55.123Z`. Throws Date's RangeError for a time Date cannot hold. */
export function formatIsoTime(ms: number = Date.now()): string {
  const t = fourDigitYearTime(ms);
  // eslint-disable-next-line no-restricted-properties -- the years this module does not format
  if (t === undefined) return new Date(ms).toISOString();
  const f = utcFields(t);
  return `${four(f.year)}-${two(f.month)}-${two(f.day)}T${two(f.hour)}:${two(f.minute)}:${two(f.second)}.${three(f.millisecond)}Z`;
}

/** `new Date(ms).toUTCString()`, the IMF-fixdate of an HTTP Date header: `Sun, 22 Nov 2026 09:46:55 GMT`. */
export function formatHttpDate(ms: number): string {
  const t = fourDigitYearTime(ms);
  // eslint-disable-next-line no-restricted-properties -- the years this module does not format
  if (t === undefined) return new Date(ms).toUTCString();
  const f = utcFields(t);
  return `${WEEKDAYS[f.weekday]}, ${two(f.day)} ${MONTHS[f.month - 1]} ${four(f.year)} ${two(f.hour)}:${two(f.minute)}:${two(f.second)} GMT`;
}

let dateSecond = Number.NaN;
let dateText = '';

/** The Date header's value now, formatted once a second (as Node caches its own). */
export function currentHttpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = formatHttpDate(now);
  }
  return dateText;
}
