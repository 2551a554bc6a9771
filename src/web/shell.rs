//! What every page shares: title, navigation, the account menu and flash messages.

use super::assets;
use crate::auth::Viewer;

/// Where a user manages their passkeys: staff who must add one are sent there
/// before any other page, and the staff menu's settings link goes there.
pub const PASSKEYS_PAGE: &str = "/settings/passkeys";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Success,
    Error,
    Info,
}

impl FlashKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlashKind::Success => "success",
            FlashKind::Error => "error",
            FlashKind::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => FlashKind::Success,
            "error" => FlashKind::Error,
            "info" => FlashKind::Info,
            _ => return None,
        })
    }
}

/// A one-time message shown on the next page (after a redirect).
#[derive(Clone, Debug)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

impl Flash {
    pub fn success(text: impl Into<String>) -> Self {
        Flash { kind: FlashKind::Success, text: text.into() }
    }

    pub fn info(text: impl Into<String>) -> Self {
        Flash { kind: FlashKind::Info, text: text.into() }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Flash { kind: FlashKind::Error, text: text.into() }
    }
}

/// The sections of the two navigations; the current one is highlighted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Orders,
    Invoices,
    Documents,
    Tickets,
    Notifications,
    Reports,
    Activity,
    Team,
    Settings,
    StaffOverview,
    StaffCustomers,
    StaffOrders,
    StaffDocuments,
    StaffWorkflows,
    StaffSecurity,
    StaffIntegrations,
}

const CUSTOMER_NAV: &[(Section, &str, &str)] = &[
    (Section::Dashboard, "/", "Dashboard"),
    (Section::Orders, "/orders", "Orders"),
    (Section::Invoices, "/invoices", "Invoices"),
    (Section::Documents, "/documents", "Documents"),
    (Section::Tickets, "/tickets", "Tickets"),
    (Section::Notifications, "/notifications", "Notifications"),
    (Section::Reports, "/reports", "Reports"),
    (Section::Activity, "/activity", "Activity"),
    (Section::Team, "/team", "Team"),
    (Section::Settings, "/settings", "Settings"),
];

const STAFF_NAV: &[(Section, &str, &str)] = &[
    (Section::StaffOverview, "/staff", "Overview"),
    (Section::StaffCustomers, "/staff/customers", "Customers"),
    (Section::StaffOrders, "/staff/orders", "Orders"),
    (Section::StaffDocuments, "/staff/documents", "Documents"),
    (Section::StaffWorkflows, "/staff/workflows", "Workflows"),
    (Section::StaffSecurity, "/staff/security", "Security"),
    (Section::StaffIntegrations, "/staff/integrations", "Integrations"),
];

pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

pub struct Nav {
    pub context: String,
    pub home: &'static str,
    pub links: Vec<NavLink>,
    pub user_name: String,
    pub email: String,
    pub role_label: &'static str,
    pub initials: String,
    pub csrf_token: String,
    pub settings_href: Option<&'static str>,
}

pub struct Shell {
    pub title: String,
    pub body_class: &'static str,
    pub main_class: &'static str,
    pub nav: Option<Nav>,
    pub flash: Option<Flash>,
    pub css: &'static str,
    pub icon: &'static str,
    /// Set on live pages: the stream position the page was rendered at (see `Scope::live_cursor`).
    pub live_cursor: Option<i64>,
    pub live_js: &'static str,
}

impl Shell {
    /// A page for a signed-in user, with the navigation of their side of the portal.
    pub fn page(viewer: &Viewer, title: impl Into<String>, section: Section, flash: Option<Flash>) -> Self {
        let staff = viewer.is_staff();
        let (entries, home, context) = if staff {
            (STAFF_NAV, "/staff", "Staff back office".to_owned())
        } else {
            (CUSTOMER_NAV, "/", viewer.customer.as_ref().map(|c| c.name.clone()).unwrap_or_default())
        };
        let links = entries.iter().map(|&(s, href, label)| NavLink { href, label, current: s == section }).collect();
        Shell {
            title: title.into(),
            body_class: if staff { "staff" } else { "" },
            main_class: "container",
            nav: Some(Nav {
                context,
                home,
                links,
                user_name: viewer.name.clone(),
                email: viewer.email.clone(),
                role_label: viewer.role.label(),
                initials: viewer.initials(),
                csrf_token: viewer.csrf_token.clone(),
                settings_href: Some(if staff { PASSKEYS_PAGE } else { "/settings" }),
            }),
            flash,
            css: assets::url("app.css"),
            icon: assets::url("icon.svg"),
            live_cursor: None,
            live_js: assets::url("live.js"),
        }
    }

    /// Makes the page live: its `data-live` regions update as the data changes.
    pub fn live(mut self, cursor: i64) -> Self {
        self.live_cursor = Some(cursor);
        self
    }

    /// A page without navigation: sign-in and error pages.
    pub fn anonymous(title: impl Into<String>) -> Self {
        Shell {
            title: title.into(),
            body_class: "auth-body",
            main_class: "auth-card",
            nav: None,
            flash: None,
            css: assets::url("app.css"),
            icon: assets::url("icon.svg"),
            live_cursor: None,
            live_js: assets::url("live.js"),
        }
    }
}
