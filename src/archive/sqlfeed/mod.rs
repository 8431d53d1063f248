//! The SQL that aos-backup streams into psql during a restore, inside the one transaction that the
//! feeder opens and commits itself, checked and made safe on the way:
//!
//! - The clean section of a script made by `pg_dump --clean` or `pg_restore --clean` (between the
//!   `SET` preamble and the first entry's `-- Name:` comment) is not only DROPs: pg_dump also turns
//!   views into dummies (`CREATE OR REPLACE VIEW ... AS SELECT NULL::...`), drops constraints and
//!   column defaults with `ALTER ... DROP`, and unlinks large objects. Any of these can fail on a
//!   populated target (a partition's key "cannot be dropped" while its parent's key needs it) or
//!   on objects the target lacks. So each statement of that section runs in a `DO` block that
//!   skips it if it fails; the DROP-like ones that failed are tried again, in order, once the
//!   others have run, and what still fails is named in a warning. That is safe because the later
//!   `CREATE` of anything not dropped fails, and the whole transaction rolls back.
//! - Into an empty target the clean section can be left out ([`SqlFeed::skip_clean`]): then the
//!   restore is exactly a restore without `--clean`.
//! - pg_dump and pg_restore put their own `BEGIN;` ... `COMMIT;` around large-object data. Inside
//!   `psql --single-transaction`, that inner `COMMIT` would commit everything before it, and a
//!   later failure would leave a half-restored database. So transaction-control lines that are
//!   whole top-level statements are removed (the script is lexed throughout: a line in a function
//!   body, a string or a comment is never one, nor is COPY data): psql's one transaction,
//!   committed at the end of input that aos-backup controls, is the only one.
//! - A SQL dump written by pg_dump must end with pg_dump's "dump complete" line. Without it, a
//!   file cut short at a statement boundary would commit half a database.
//!
//! The SQL is lexed once, by the rules in `lex`: `stream` follows the whole script statement by
//! statement as psql does, `clean` finds where each statement of the clean section ends.

mod clean;
mod feed;
mod lex;
mod peek;
#[cfg(test)]
mod samples;
mod split;
mod stream;

pub use clean::SKIPPED_MARK;
pub use feed::SqlFeed;
pub use peek::{peek_clean_section, CleanSection};
pub use split::split_statements;
