//! Getting in: the sign-in page, signing in with a passkey, the pages behind
//! emailed links (invitations, registrations, resets) and the forms that send
//! those emails. An area like the others: it stands on `web/` and `auth/`.

pub mod forms;
pub mod links;
pub mod login;
pub mod passkey;
pub mod self_service;
