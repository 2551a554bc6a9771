//! What the web crate provides so the live layer can push HTML it knows
//! nothing about.

use std::collections::HashMap;

use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use crate::event::{Audience, Event};
use crate::protocol::Op;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

pub type RenderFuture<T> = LocalBoxFuture<'static, Result<T, RenderError>>;

/// Events a page missed, and the stream position they bring it to.
pub struct Catchup {
    pub events: Vec<Event>,
    pub position: i64,
}

/// Renders live regions. A region is the id of an element on a page that the
/// page marked live; the renderer decides what each id means, renders it only
/// through the audience's own database scope, and ignores ids it does not know.
pub trait Renderer: Send + Sync + 'static {
    /// Whether `event` may change what `region` shows to `audience`.
    fn affects(&self, audience: &Audience, region: &str, event: &Event) -> bool;

    /// Audiences with equal keys for a region see exactly the same markup for
    /// it, so one rendering serves them all. When in doubt, include the user.
    fn share_key(&self, audience: &Audience, region: &str) -> String;

    /// The current markup of `regions` for `audience`, as ops keyed by region.
    /// A region that no longer exists (or never did, for this audience) is removed.
    fn render(&self, audience: Audience, regions: Vec<String>) -> RenderFuture<HashMap<String, Vec<Op>>>;

    /// Events visible to `audience` written by transactions at or after
    /// `cursor`; `None` when the cursor is older than what is retained (or too
    /// much happened since), and the page must be re-rendered whole.
    fn events_since(&self, audience: Audience, cursor: i64) -> RenderFuture<Option<Catchup>>;

    /// Which of these sessions may still receive pushes, with the role each now has.
    fn alive(&self, sessions: Vec<Uuid>) -> RenderFuture<HashMap<Uuid, String>>;
}
