// The API page (/docs): Swagger UI from the vendored bundle, reading /openapi.json; no inline script (CSP).
// "Authorize" takes the bearer token; a token from the review page's login (sessionStorage) is used when present.
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  requestInterceptor: (request) => {
    const token = sessionStorage.getItem("medannot.token");
    if (token && !request.headers.Authorization) request.headers.Authorization = `Bearer ${token}`;
    return request;
  },
});
