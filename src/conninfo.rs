//! DATABASE_URL parsing: one validated connection description for libpq children and tokio-postgres.
