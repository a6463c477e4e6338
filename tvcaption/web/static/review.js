// tvcaption review: play a scene from its start, show the description track, save corrections.
// Loaded on every page; does something only on a scene page (#scene). No inline script (CSP).
"use strict";
(function () {
  const scene = document.getElementById("scene");
  if (!scene) return;
  const video = document.getElementById("player");
  const status = document.getElementById("status");
  const description = document.getElementById("description");
  const form = document.getElementById("edit");
  const text = document.getElementById("text");
  const by = document.getElementById("by");
  const saved = document.getElementById("saved");
  const start = parseFloat(scene.dataset.start);
  const end = parseFloat(scene.dataset.end);
  const base = "/recordings/" + scene.dataset.recording;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let offset = 0;
  let stopAtEnd = false;

  if (!by.value) by.value = localStorage.getItem("tvcaption-reviewer") || "";

  // the description track: loaded hidden, its active cue written under the picture
  const track = video.querySelector("track");
  function showCue() {
    const cues = video.textTracks[0] && video.textTracks[0].activeCues;
    description.textContent = cues && cues.length ? Array.from(cues).map((c) => c.getCueAsHTML().textContent).join(" ") : "";
  }
  if (video.textTracks[0]) {
    video.textTracks[0].mode = "hidden";
    video.textTracks[0].addEventListener("cuechange", showCue);
  }
  // cue times count from the first frame; the player's timeline has it at `offset`
  let known = false;
  function shiftCues() {
    const cues = video.textTracks[0] && video.textTracks[0].cues;
    if (!known || !cues || track.readyState !== 2 || track.dataset.shifted === track.src) return;
    track.dataset.shifted = track.src;
    for (const cue of Array.from(cues)) { cue.startTime += offset; cue.endTime += offset; }
  }
  track.addEventListener("load", shiftCues);

  function playScene() {
    stopAtEnd = true;
    video.currentTime = start + offset;
    const played = video.play();
    if (played) played.catch((err) => { status.textContent = "cannot play: " + err.message; });
  }
  video.addEventListener("timeupdate", () => {
    if (stopAtEnd && video.currentTime >= end + offset) { video.pause(); stopAtEnd = false; }
  });
  video.addEventListener("error", () => { status.textContent = "the browser cannot play this video"; });

  // a recording browsers cannot play is shown through a proxy; until the whole recording's proxy is
  // made (in the background), the server makes one of this scene alone: say how long so far
  const asked = Date.now();
  const waiting = setInterval(() => {
    const seconds = Math.round((Date.now() - asked) / 1000);
    status.textContent = "preparing a browser copy of this scene… " + seconds + " s";
  }, 1000);
  status.textContent = "loading the video…";
  fetch(base + "/media.json?scene=" + scene.dataset.index, { credentials: "same-origin" })
    .then((r) => r.ok ? r.json() : r.text().then((t) => Promise.reject(new Error(t.trim()))))
    .finally(() => clearInterval(waiting))
    .then((info) => {
      offset = info.offset || 0;
      scene.dataset.offset = String(offset);  // the recording's time is the player's minus this
      known = true;
      shiftCues();
      video.addEventListener("loadedmetadata", () => {
        video.currentTime = start + offset;
        status.textContent = info.part
          ? "playing a browser copy of this scene (" + info.part[0].toFixed(1) + "–" + info.part[1].toFixed(1) +
            " s of the recording); the whole recording's copy is being made"
          : (info.proxy ? "playing a browser copy (H.264 proxy)" : "");
        scene.dataset.ready = "1";
      }, { once: true });
      video.src = info.src;
      video.load();
    })
    .catch((err) => { status.textContent = "video unavailable: " + err.message; });

  function render(result) {
    const caption = document.querySelector('[data-role="caption"]');
    caption.textContent = result.caption;
    caption.classList.add("corrected");
    let mark = document.querySelector('[data-role="corrected"]');
    if (!mark) {
      mark = document.createElement("p");
      mark.className = "mark";
      mark.dataset.role = "corrected";
      caption.after(mark);
    }
    mark.textContent = "corrected by " + result.corrected.by + " at " + result.corrected.at;
    const history = document.getElementById("history");
    history.replaceChildren(...result.history.map((h) => {
      const li = document.createElement("li");
      li.textContent = "\u201c" + h.text + "\u201d by " + h.by + " at " + h.at + " (replaced \u201c" + h.replaces + "\u201d)";
      return li;
    }));
    if (video.textTracks[0]) track.src = base + "/descriptions.vtt?v=" + Date.now();
  }

  function save(event) {
    if (event) event.preventDefault();
    saved.textContent = "saving…";
    localStorage.setItem("tvcaption-reviewer", by.value.trim());
    fetch(base + "/scenes/" + scene.dataset.index + "/caption", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ text: text.value, by: by.value }),
    }).then((r) => r.ok ? r.json() : r.text().then((t) => Promise.reject(new Error(t.trim()))))
      .then((result) => { render(result); saved.textContent = "saved"; })
      .catch((err) => { saved.textContent = "not saved: " + err.message; });
  }
  form.addEventListener("submit", save);
  document.getElementById("play").addEventListener("click", playScene);

  document.addEventListener("keydown", (event) => {
    const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(document.activeElement.tagName);
    if (typing) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) save(event);
      else if (event.key === "Escape") document.activeElement.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const go = (url) => { if (url) window.location.href = url; };
    if (event.key === "p" || event.key === " ") { event.preventDefault(); playScene(); }
    else if (event.key === "e") { event.preventDefault(); text.focus(); text.select(); }
    else if (event.key === "n") go(scene.dataset.next);
    else if (event.key === "b") go(scene.dataset.previous);
  });
})();
