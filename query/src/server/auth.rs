//! Password authentication with SCRAM-SHA-256: the password never crosses the wire, libpq (psql, psycopg) and
//! JDBC speak it, and a wrong password or an unknown user fail alike with Postgres' 28P01.

use std::fmt;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{gen_salted_password, SCRAM_ITERATIONS};
use datafusion_postgres::pgwire::api::auth::{AuthSource, LoginInfo, Password};
use datafusion_postgres::pgwire::error::PgWireResult;

/// The one user the server accepts, with its SCRAM salted password computed once at start (as Postgres stores
/// `SCRAM-SHA-256$<iterations>:<salt>$...` rather than the password).
pub struct ScramUser {
    user: String,
    salt: Vec<u8>,
    salted_password: Vec<u8>,
    /// Answered for any other user name, so an unknown user goes through the same exchange and fails with the
    /// same error as a wrong password: the server does not tell which user names exist.
    decoy_salted_password: Vec<u8>,
}

impl ScramUser {
    /// Derives the salted password of `user` under a fresh random salt.
    pub fn new(user: &str, password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        let decoy: [u8; 32] = rand::random();
        Self {
            user: user.to_string(),
            salt: salt.to_vec(),
            salted_password: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
            decoy_salted_password: decoy.to_vec(),
        }
    }
}

impl fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The salted password is a password equivalent for SCRAM: never in logs.
        f.debug_struct("ScramUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for ScramUser {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salted = if login.user() == Some(self.user.as_str()) {
            &self.salted_password
        } else {
            tracing::warn!(
                user = login.user().unwrap_or(""),
                "login as an unknown user"
            );
            &self.decoy_salted_password
        };
        Ok(Password::new(Some(self.salt.clone()), salted.clone()))
    }
}
