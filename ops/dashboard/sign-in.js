// The sign-in form: posted by fetch so that a refusal shows its message here rather than as JSON.
// On success the server answers 303 to the dashboard, which fetch follows with the new cookie.
"use strict";

(function () {
  const form = document.getElementById("sign-in");
  const problem = document.getElementById("problem");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        cache: "no-store",
      });
      if (response.ok) {
        window.location.assign(response.url);
        return;
      }
      const body = await response.json();
      problem.textContent = body.message || "HTTP " + response.status;
    } catch (error) {
      problem.textContent = "no answer from the API";
    }
  });
})();
