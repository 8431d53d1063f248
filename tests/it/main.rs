//! The single integration-test binary of aos-backup: a real PostgreSQL server (`harness`), a builder
//! that runs the real `aos-backup` binary (`cmd`), and the test modules that use them.

mod catalog;
mod cleanphase;
mod cmd;
mod configkeys;
mod core;
mod daemon;
mod docker;
mod facts;
mod globals;
mod guards;
mod hardening_archive;
mod hardening_conn;
mod harness;
mod hooks;
mod killsafe;
mod library;
mod manydb;
mod monitoring;
mod perdb;
mod pgpass;
mod pipeline;
mod presets;
mod rehearse;
mod rowcounts;
mod scripts;
mod secrets;
mod smoke;
mod sqlfeed_lexing;
mod support;
mod suspect;
mod tls;
mod validate;
