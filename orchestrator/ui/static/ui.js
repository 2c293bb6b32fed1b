// Keeps the element marked data-live current: re-fetch its fragment every interval and
// swap it in (no framework; everything served by the dashboard itself).
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const every = Number(document.body.dataset.liveMs || 1000);
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(live.dataset.live, { headers: { "Accept": "text/html" } });
      if (response.ok) {
        const html = await response.text();
        if (html !== live.dataset.last) {
          live.innerHTML = html;
          live.dataset.last = html;
        }
        document.body.classList.remove("offline");
      } else {
        document.body.classList.add("offline");
      }
    } catch (error) {
      document.body.classList.add("offline");
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, every);
})();

// The token a person typed is kept in this browser's session and put in every action's
// form as it is sent.
(function () {
  const input = document.getElementById("token");
  if (!input) return;
  input.value = sessionStorage.getItem("sagaflow-token") || "";
  input.addEventListener("input", () => sessionStorage.setItem("sagaflow-token", input.value));
  document.addEventListener("submit", (event) => {
    const field = event.target.querySelector(".token-field");
    if (field) field.value = input.value;
  }, true);
})();
