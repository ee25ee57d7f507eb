//! `adstream query serve`: a DataFusion [`SessionContext`] over the PostgreSQL wire protocol.
//!
//! Built on datafusion-postgres, with what its default server leaves out for a shared deployment: SCRAM-SHA-256
//! password authentication for one configured user ([`auth`]), a read-only rule in front of every statement
//! ([`read_only`]), session-local settings ([`settings`]), limits on query texts ([`limits`]), queries run as checked
//! plans under a memory pool, a timeout and cancel requests ([`engine`]), a cap on connections, TLS ([`tls`]),
//! Postgres' `pg_catalog` and `information_schema` so psql's `\dt` and `\d` and BI tools can list and describe
//! tables, and a `tracing` span per connection.
//!
//! Planning and checking recurse over a statement's tree. The text limits keep trees shallow, but the server should
//! still run on worker threads with a few megabytes of stack more than tokio's default: `adstream` gives them
//! [`WORKER_STACK_BYTES`].

pub mod auth;
pub mod engine;
pub mod limits;
pub mod parse_budget;
pub mod read_only;
pub mod session;
pub mod settings;
pub mod tls;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, ErrorHandler, PgWireConnectionState, PgWireServerHandlers,
    METADATA_USER,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::{process_socket, TlsAcceptor};
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::Instrument;

use self::auth::ScramUser;
use self::engine::{
    DeclareCursorHook, ExecuteHook, ExecutionLimits, QueryCancelHandler, QueryEngine,
};
use self::limits::TextLimits;
use self::read_only::ReadOnlyHook;
use self::session::ReadOnlySession;
use self::settings::SessionSettingsHook;

/// The stack the worker threads of a runtime serving SQL should have: planning a statement at the depth
/// [`TextLimits`] allows takes more than tokio's default 2 MiB in a debug build.
pub const WORKER_STACK_BYTES: usize = 32 << 20;

/// What the server lets its clients use.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections served at once; one more is refused with Postgres' `53300 too_many_connections`.
    pub max_connections: usize,
    /// Bounds on a query text, checked before it is parsed.
    pub text: TextLimits,
    /// Memory and time for running queries.
    pub execution: ExecutionLimits,
}

/// What `serve` needs besides the tables.
#[derive(Clone)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port (read it back with [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// The user name clients log in as; any other name is refused like a wrong password.
    pub user: String,
    /// That user's password, checked with SCRAM-SHA-256; an empty one is refused at start.
    pub password: String,
    /// Connection, query and memory limits.
    pub limits: ServerLimits,
    /// TLS offered to clients that ask for it ([`tls::acceptor`]).
    pub tls: Option<TlsAcceptor>,
    /// Refuse clients that did not ask for TLS (needs `tls`).
    pub require_tls: bool,
}

impl fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeOptions")
            .field("listen", &self.listen)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No password configured: the server never accepts logins without one.
    #[error("the SQL server needs a password for user '{user}'")]
    NoPassword {
        /// The configured user.
        user: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// TLS is required but no certificate was given.
    #[error("TLS is required but no certificate and key were given")]
    TlsWithoutCertificate,
    /// `pg_catalog` could not be installed in the session context.
    #[error("cannot set up pg_catalog: {0}")]
    Catalog(#[from] Box<DataFusionError>),
}

/// A bound server, not yet accepting connections.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    handlers: Arc<Handlers>,
    /// One permit per connection served.
    connections: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Installs `pg_catalog` and `information_schema` in `ctx` and binds `options.listen`.
    pub async fn bind(
        ctx: Arc<SessionContext>,
        options: ServeOptions,
    ) -> Result<Self, ServerError> {
        if options.password.is_empty() {
            return Err(ServerError::NoPassword { user: options.user });
        }
        if options.require_tls && options.tls.is_none() {
            return Err(ServerError::TlsWithoutCertificate);
        }
        install_catalog(&ctx)?;
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: options.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: options.listen,
            source,
        })?;
        Ok(Self {
            listener,
            local_addr,
            connections: Arc::new(Semaphore::new(options.limits.max_connections)),
            handlers: Arc::new(Handlers::new(ctx, &options)),
            tls: options.tls,
        })
    }

    /// The address the server listens on (the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections until `shutdown` resolves, each served on its own task inside a `connection` span
    /// with a connection id and the peer address.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next_id: u64 = 0;
        loop {
            let (socket, peer) = tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a connection");
                        // Out of file descriptors and the like last a while: pause rather than spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            next_id += 1;
            let span = tracing::info_span!("connection", id = next_id, %peer);
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tokio::spawn(refuse_connection(socket).instrument(span));
                continue;
            };
            let handlers = self.handlers.clone();
            let tls = self.tls.clone();
            tokio::spawn(
                async move {
                    tracing::info!("connected");
                    match process_socket(socket, tls, handlers).await {
                        Ok(()) => tracing::info!("disconnected"),
                        Err(error) => tracing::warn!(%error, "connection closed on an error"),
                    }
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

/// Binds and serves `ctx` until `shutdown` resolves.
pub async fn serve(
    ctx: Arc<SessionContext>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let server = Server::bind(ctx, options).await?;
    tracing::info!(addr = %server.local_addr(), "SQL server listening");
    server.run(shutdown).await;
    Ok(())
}

/// Postgres' SQLSTATE for a connection over the server's limit.
const TOO_MANY_CONNECTIONS: &str = "53300";
/// The code of the request libpq sends first to ask for TLS (`SSLRequest`), and of the one for GSSAPI encryption.
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// How long a refused client gets to send its startup message.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a connection over the limit as Postgres does: a `FATAL 53300` error after the client's startup message,
/// so clients report "too many connections" instead of hanging or seeing the connection drop.
async fn refuse_connection(mut socket: TcpStream) {
    tracing::warn!("refused: too many connections");
    let exchange = async {
        // Declining TLS and GSSAPI encryption with 'N' gets the plain startup message libpq sends next.
        loop {
            let length = socket.read_u32().await?;
            let code = socket.read_u32().await?;
            let mut rest = vec![0u8; (length as usize).saturating_sub(8).min(10_000)];
            socket.read_exact(&mut rest).await?;
            if code == SSL_REQUEST_CODE || code == GSSENC_REQUEST_CODE {
                socket.write_all(b"N").await?;
            } else {
                break;
            }
        }
        socket
            .write_all(&fatal_error(
                TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            ))
            .await?;
        socket.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(REFUSAL_READ_TIMEOUT, exchange).await {
        tracing::debug!(%error, "refused client went away");
    }
}

/// A Postgres `ErrorResponse` message of severity FATAL.
fn fatal_error(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut frame = vec![b'E'];
    // The length counts itself and the fields; both are a few dozen bytes.
    frame.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    frame.extend_from_slice(&fields);
    frame
}

fn install_catalog(ctx: &SessionContext) -> Result<(), ServerError> {
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        // Clients list tables through information_schema as much as through pg_catalog; DataFusion only serves it
        // when enabled, and reads the flag at planning time, so enabling it on a live context works.
        options.catalog.information_schema = true;
        // Queries are planned from statements the Postgres parser read; a hook that still plans text (DECLARE's
        // query) must read it the same way.
        options.sql_parser.dialect = Dialect::PostgreSQL;
    }
    let catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    setup_pg_catalog(ctx, &catalog, EmptyContextProvider)?;
    Ok(())
}

/// The pgwire handlers: the read-only session and the query engine, SCRAM at startup.
struct Handlers {
    session: Arc<ReadOnlySession>,
    user: Arc<ScramUser>,
    parameters: Arc<DefaultServerParameterProvider>,
    connections: Arc<ConnectionManager>,
    cancel: Arc<QueryCancelHandler>,
    require_tls: bool,
}

impl Handlers {
    fn new(ctx: Arc<SessionContext>, options: &ServeOptions) -> Self {
        let engine = Arc::new(QueryEngine::new(ctx.clone(), options.limits.execution));
        // The read-only hook goes first: the others answer SET/SHOW, transactions and cursors themselves, and
        // DECLARE runs its query, so a write must be refused before any of them sees it. The settings hook comes
        // before datafusion-postgres' SET hook, which would hand settings it does not know to the shared context,
        // and the DECLARE hook before its cursor hook, which would run the query outside the engine.
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnlyHook),
            Arc::new(SessionSettingsHook),
            Arc::new(DeclareCursorHook::new(engine.clone())),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let mut portal_hooks = hooks.clone();
        portal_hooks.push(Arc::new(ExecuteHook::new(engine.clone())));
        let mut parameters = DefaultServerParameterProvider::default();
        // Tell clients the truth at startup: tools read these to decide what to offer.
        parameters.default_transaction_read_only = true;
        parameters.is_superuser = false;
        let connections = Arc::new(ConnectionManager::new());
        Self {
            session: Arc::new(ReadOnlySession::new(
                engine.clone(),
                options.limits.text,
                hooks,
                Arc::new(DfSessionService::new_with_hooks(ctx, portal_hooks)),
            )),
            user: Arc::new(ScramUser::new(&options.user, &options.password)),
            parameters: Arc::new(parameters),
            cancel: Arc::new(QueryCancelHandler::new(
                DefaultCancelHandler::new(connections.clone()),
                engine,
            )),
            connections,
            require_tls: options.require_tls,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        // A new handler per connection: pgwire asks once per connection, and the SASL handler holds that
        // connection's SCRAM exchange.
        let sasl = SASLAuthStartupHandler::new(self.parameters.clone())
            .with_scram(ScramAuth::new(self.user.clone()))
            .with_connection_manager(self.connections.clone());
        Arc::new(LoggedStartup {
            inner: sasl,
            require_tls: self.require_tls,
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LoggedErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Postgres' SQLSTATE for a connection its rules refuse (here: without TLS when TLS is required).
const INVALID_AUTHORIZATION: &str = "28000";

/// Refuses clients without TLS when it is required, and logs the successful end of authentication, which the SASL
/// handler does silently.
struct LoggedStartup<H> {
    inner: H,
    require_tls: bool,
}

#[async_trait]
impl<H: StartupHandler> StartupHandler for LoggedStartup<H> {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let authenticating = !matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        if authenticating && self.require_tls && !client.is_secure() {
            // Before the password exchange: nothing secret crosses an unencrypted connection.
            tracing::warn!("refused: the client did not ask for TLS, which is required");
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_string(),
                INVALID_AUTHORIZATION.to_string(),
                "this server requires TLS: connect with sslmode=require (or verify-ca, verify-full)".to_string(),
            ))));
        }
        self.inner.on_startup(client, message).await?;
        if authenticating && matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            tracing::info!(user = user_of(client), "authenticated");
        }
        Ok(())
    }
}

/// Logs what is sent back as an error, authentication failures as warnings.
struct LoggedErrors;

impl ErrorHandler for LoggedErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(_) = error {
            let user = user_of(client).to_string();
            tracing::warn!(user, "password authentication failed");
            // libpq leaves the user name out of the SCRAM messages (it sent it at startup), so pgwire's message
            // would name an empty user; name the one the client logged in as, as Postgres does.
            *error = PgWireError::InvalidPassword(user);
        } else {
            tracing::info!(%error, "error sent to the client");
        }
    }
}

fn user_of<C: ClientInfo>(client: &C) -> &str {
    client
        .metadata()
        .get(METADATA_USER)
        .map_or("", String::as_str)
}
