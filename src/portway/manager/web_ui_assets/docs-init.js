// Starts Swagger UI on the API docs page (a file, so the page needs no inline script).
window.addEventListener("DOMContentLoaded", () => {
  const target = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: target.dataset.spec, dom_id: "#swagger-ui", deepLinking: true });
});
