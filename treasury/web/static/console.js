// treasury console: live regions and the WebAuthn ceremonies. A static file: the CSP allows no inline script.
"use strict";

function b64urlToBuffer(text) {
  const pad = "=".repeat((4 - (text.length % 4)) % 4);
  const raw = atob((text + pad).replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out.buffer;
}

function bufferToB64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let raw = "";
  for (let i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
  return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(o) {
  o.challenge = b64urlToBuffer(o.challenge);
  o.user.id = b64urlToBuffer(o.user.id);
  (o.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBuffer(c.id); });
  return o;
}

function requestOptions(o) {
  o.challenge = b64urlToBuffer(o.challenge);
  (o.allowCredentials || []).forEach(function (c) { c.id = b64urlToBuffer(c.id); });
  return o;
}

function credentialJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: bufferToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufferToB64url(r.attestationObject);
    if (r.getTransports) response.transports = r.getTransports();
  } else {
    response.authenticatorData = bufferToB64url(r.authenticatorData);
    response.signature = bufferToB64url(r.signature);
    if (r.userHandle) response.userHandle = bufferToB64url(r.userHandle);
  }
  return JSON.stringify({
    id: cred.id, rawId: bufferToB64url(cred.rawId), type: cred.type, response: response,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
  });
}

function wirePasskeyForm(form) {
  const mode = form.dataset.webauthn;
  const button = form.querySelector("button[type=submit]");
  const status = form.querySelector(".status");
  let sent = false;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (sent) return; // one ceremony, one POST: a double click sends nothing twice
    sent = true;
    button.disabled = true;
    status.textContent = "Waiting for your passkey…";
    const options = JSON.parse(form.querySelector(".webauthn-options").textContent);
    const ask = mode === "create"
      ? navigator.credentials.create({ publicKey: creationOptions(options) })
      : navigator.credentials.get({ publicKey: requestOptions(options) });
    ask.then(function (cred) {
      form.querySelector("input[name=credential]").value = credentialJSON(cred);
      status.textContent = "Signed; sending…";
      form.submit();
    }).catch(function (err) {
      sent = false;
      button.disabled = false;
      status.textContent = "The passkey did not answer (" + err.name + "). Nothing was sent.";
    });
  });
}

function wireLive(region) {
  const url = region.dataset.live;
  const every = Math.max(2, parseFloat(region.dataset.poll || "2")) * 1000;
  function poll() {
    if (document.hidden) return;
    fetch(url, { credentials: "same-origin", headers: { "accept": "text/html" }, redirect: "manual" })
      .then(function (r) {
        const version = r.ok ? r.headers.get("x-live-version") : null;
        if (!version || version === region.dataset.version) return null; // unchanged: leave the page alone
        return r.text().then(function (html) {
          region.innerHTML = html;
          region.dataset.version = version;
        });
      })
      .catch(function () {});
  }
  setInterval(poll, every);
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-webauthn]").forEach(wirePasskeyForm);
  document.querySelectorAll("[data-live]").forEach(wireLive);
});
