// harvest serve: the little script the pages need, no library. Every value from the server is
// set as text (textContent), never as markup.
"use strict";

function formatCount(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "—";
}

// Overview: ask /api/status again every few seconds and update the counts in place.
function liveStatus() {
  const section = document.getElementById("status");
  if (!section) return;
  const every = Math.max(1, Number(section.dataset.refreshS) || 3) * 1000;
  async function refresh() {
    try {
      const answer = await fetch("/api/status", { headers: { Accept: "application/json" } });
      if (!answer.ok) return;
      const s = await answer.json();
      for (const el of document.querySelectorAll("[data-count]")) {
        el.textContent = formatCount(s[el.dataset.count]);
      }
      const at = document.querySelector("[data-field=at]");
      if (at) at.textContent = new Date(s.at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      const rows = new Map(
        Array.from(document.querySelectorAll("#keywords tbody tr"), (tr) => [tr.dataset.keyword, tr]),
      );
      for (const k of s.keywords) {
        const tr = rows.get(k.keyword);
        if (!tr) continue;
        for (const td of tr.querySelectorAll("[data-col]")) td.textContent = formatCount(k[td.dataset.col]);
      }
    } catch (e) {
      // the server stopped: keep the last counts shown
    }
  }
  window.setInterval(refresh, every);
}

// Duplicates: flip the first figure of each group between the representative and its copy.
function flipButtons() {
  for (const group of document.querySelectorAll(".group")) {
    const button = group.querySelector(".toggle");
    const figure = group.querySelector(".flip");
    if (!button || !figure) continue;
    button.addEventListener("click", () => {
      const img = figure.querySelector("img");
      const showing = figure.dataset.showing === "b" ? "a" : "b";
      figure.dataset.showing = showing;
      const id = showing === "b" ? figure.dataset.b : figure.dataset.a;
      if (img) img.src = "/thumb/" + encodeURIComponent(id);
      const caption = figure.querySelector("figcaption");
      if (caption) caption.lastChild.textContent = showing === "b" ? " copy" : " representative";
      const link = figure.querySelector("figcaption a");
      if (link) { link.textContent = id; link.href = "/photo/" + encodeURIComponent(id); }
    });
  }
}

// Search: show the chosen file before it is sent.
function uploadPreview() {
  const input = document.querySelector("#search input[type=file]");
  const preview = document.getElementById("preview");
  if (!input || !preview) return;
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    if (!file) { preview.hidden = true; return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  });
}

// Browse: a changed filter applies at once (the Filter button stays for keyboards).
function autoFilter() {
  const form = document.getElementById("filters");
  if (!form) return;
  for (const select of form.querySelectorAll("select")) {
    select.addEventListener("change", () => form.submit());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  liveStatus();
  flipButtons();
  uploadPreview();
  autoFilter();
});
