// Passkey ceremonies: a form marked data-passkey="register" | "sign-in" | "confirm"
// asks the server to start a ceremony (data-start), hands the options to the
// browser's WebAuthn API, and sends the authenticator's answer to data-finish.
// The server answers {redirect} or {error}; nothing here decides anything.
(function () {
  "use strict";

  var supported = !!(window.PublicKeyCredential && navigator.credentials);

  function fromB64url(value) {
    var s = String(value).replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function toB64url(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeList(list) {
    return (list || []).map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = fromB64url(c.id);
      return copy;
    });
  }

  function creationOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: fromB64url(pk.user.id) });
    pk.excludeCredentials = decodeList(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = fromB64url(pk.challenge);
    pk.allowCredentials = decodeList(pk.allowCredentials);
    return { publicKey: pk };
  }

  function registration(cred) {
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toB64url(cred.response.attestationObject),
        clientDataJSON: toB64url(cred.response.clientDataJSON)
      },
      extensions: {}
    };
  }

  function assertion(cred) {
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64url(cred.response.authenticatorData),
        clientDataJSON: toB64url(cred.response.clientDataJSON),
        signature: toB64url(cred.response.signature),
        userHandle: toB64url(cred.response.userHandle)
      },
      extensions: {}
    };
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (type.indexOf("application/json") === 0) {
        return response.json().then(function (data) {
          if (!response.ok && !data.error) data.error = "Something went wrong. Try again.";
          return data;
        });
      }
      if (response.status === 429) return { error: "Too many attempts. Wait a few minutes, then try again." };
      if (response.status === 403) return { error: "This page has expired. Reload it and try again." };
      return { error: "Something went wrong (" + response.status + "). Reload the page and try again." };
    });
  }

  function field(form, name) {
    var input = form.querySelector('[name="' + name + '"]');
    return input ? input.value : "";
  }

  function say(form, message) {
    var box = form.querySelector("[data-passkey-error]");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  function busy(form, on) {
    var button = form.querySelector("[data-passkey-button]");
    if (button) {
      button.disabled = on;
      button.setAttribute("aria-busy", on ? "true" : "false");
    }
  }

  // Why the browser's prompt ended without a credential, in the user's words.
  function explain(error) {
    if (!error) return "Something went wrong. Try again.";
    if (error.name === "NotAllowedError") return "The passkey prompt was closed or timed out. Try again when you're ready.";
    if (error.name === "InvalidStateError") return "This device already has a passkey for your account.";
    if (error.name === "SecurityError") return "This browser refused passkeys for this address.";
    return error.message || "Something went wrong. Try again.";
  }

  // Once the authenticator has answered, that answer is the sign-in: a second
  // ceremony (a click racing the autofill) would only fail against the new session.
  var finishing = false;

  function finish(form, data, extra) {
    finishing = true;
    var body = Object.assign({ csrf_token: field(form, "csrf_token"), ceremony: data.ceremony }, extra);
    return post(form.dataset.finish, body).then(function (answer) {
      if (answer.redirect) {
        window.location.assign(answer.redirect);
        return true;
      }
      finishing = false;
      say(form, answer.error);
      return false;
    });
  }

  function start(form) {
    return post(form.dataset.start, { csrf_token: field(form, "csrf_token") });
  }

  function register(form) {
    say(form, "");
    busy(form, true);
    start(form)
      .then(function (data) {
        if (data.error) throw new Error(data.error);
        // Asked to confirm who you are first.
        if (data.redirect) return window.location.assign(data.redirect);
        return navigator.credentials.create(creationOptions(data.options)).then(function (cred) {
          return finish(form, data, { name: field(form, "name"), credential: registration(cred) });
        });
      })
      .catch(function (error) { say(form, explain(error)); })
      .then(function () { busy(form, false); });
  }

  function authenticate(form, extra, mediation, signal) {
    return start(form).then(function (data) {
      if (data.error) throw new Error(data.error);
      var options = requestOptions(data.options);
      if (mediation) options.mediation = mediation;
      if (signal) options.signal = signal;
      return navigator.credentials.get(options).then(function (cred) {
        return finish(form, data, Object.assign({ credential: assertion(cred) }, extra()));
      });
    });
  }

  function signInExtra(form) {
    return function () {
      var remember = document.getElementById("remember");
      var next = field(form, "next");
      return { remember: !!(remember && remember.checked), next: next || null };
    };
  }

  // Passkey autofill: the email field offers passkeys while the page is open.
  var autofill = null;
  var clicked = false;
  function offerAutofill(form) {
    if (!PublicKeyCredential.isConditionalMediationAvailable) return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available || clicked) return;
      autofill = new AbortController();
      authenticate(form, signInExtra(form), "conditional", autofill.signal).catch(function (error) {
        if (error && error.name !== "AbortError") say(form, explain(error));
      });
    });
  }

  function signIn(form) {
    if (finishing) return;
    clicked = true;
    if (autofill) {
      autofill.abort();
      autofill = null;
    }
    say(form, "");
    busy(form, true);
    authenticate(form, signInExtra(form))
      .catch(function (error) { say(form, explain(error)); })
      .then(function () { busy(form, false); });
  }

  function confirm(form) {
    say(form, "");
    busy(form, true);
    authenticate(form, function () { return { next: field(form, "next") || null }; })
      .catch(function (error) { say(form, explain(error)); })
      .then(function () { busy(form, false); });
  }

  var forms = document.querySelectorAll("form[data-passkey]");
  Array.prototype.forEach.call(forms, function (form) {
    var kind = form.dataset.passkey;
    if (!supported) {
      var note = form.querySelector("[data-passkey-unsupported]");
      if (note) note.hidden = false;
      var button = form.querySelector("[data-passkey-button]");
      if (button) button.disabled = true;
      return;
    }
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (kind === "register") register(form);
      else if (kind === "sign-in") signIn(form);
      else if (kind === "confirm") confirm(form);
    });
    if (kind === "sign-in") offerAutofill(form);
  });
})();
