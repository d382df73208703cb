// PixelFox page behaviour: copy buttons, confirmations, upload progress. No inline scripts
// (the CSP forbids them), no CDN.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = button.parentElement.querySelector("input");
  input.select();
  const done = () => { button.textContent = "Copied"; setTimeout(() => (button.textContent = "Copy"), 1500); };
  if (navigator.clipboard) navigator.clipboard.writeText(input.value).then(done, done);
  else { document.execCommand("copy"); done(); }
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Upload progress for the HTMX form upload.
document.addEventListener("htmx:xhr:progress", (event) => {
  const bar = document.getElementById("upload-progress");
  if (bar && event.detail.lengthComputable) {
    bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
  }
});

// Direct-to-storage upload (setting direct_upload_enabled): ask the app for a session,
// send the file straight to the storage node with a progress bar, then go to the viewer.
// 413/415/429 map to the flash routes; anything else falls back to the normal form upload.
const FLASH_FOR = { 413: "/flash/upload-too-large", 415: "/flash/upload-unsupported-type",
                    429: "/flash/upload-rate-limit" };

function directUpload(form, file) {
  const bar = document.getElementById("upload-progress");
  const csrf = form.querySelector("input[name=csrf_token]").value;
  return fetch(form.dataset.sessionUrl, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" },
    body: JSON.stringify({ file_size: file.size }),
  }).then((resp) => resp.json().then((body) => ({ resp, body }))).then(({ resp, body }) => {
    if (!resp.ok) return { status: resp.status, body };
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      const data = new FormData();
      data.append("file", file, file.name);
      xhr.open("POST", body.upload_url);
      xhr.setRequestHeader("Authorization", "Bearer " + body.token);
      xhr.setRequestHeader("Accept", "application/json");
      bar.style.display = "block";
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100); };
      xhr.onload = () => {
        let parsed = {};
        try { parsed = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
        resolve({ status: xhr.status, body: parsed });
      };
      xhr.onerror = () => resolve({ status: 0, body: {} });
      xhr.send(data);
    });
  });
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id !== "upload-form" || form.dataset.direct !== "1" || form.dataset.fallback === "1") return;
  const input = form.querySelector("input[type=file]");
  if (!input.files.length || input.files.length > 1) return; // several files: form upload
  event.preventDefault();
  event.stopImmediatePropagation();
  directUpload(form, input.files[0]).then(({ status, body }) => {
    if (status === 201 && body.view_url) { window.location.href = body.view_url; return; }
    if (FLASH_FOR[status]) { window.location.href = FLASH_FOR[status]; return; }
    if (status >= 400 && status < 500 && body.error) {
      window.location.href = "/flash/upload-error?code=" + encodeURIComponent(body.error);
      return;
    }
    form.dataset.fallback = "1";  // storage node unreachable or failing: use the app node
    form.requestSubmit();
  }).catch(() => { form.dataset.fallback = "1"; form.requestSubmit(); });
}, true);

// Stop polling while the tab is hidden: cancel HTMX polling requests until it is visible.
document.addEventListener("htmx:beforeRequest", (event) => {
  const trigger = event.detail.elt.getAttribute("hx-trigger") || "";
  if (document.hidden && trigger.includes("every")) event.preventDefault();
});
