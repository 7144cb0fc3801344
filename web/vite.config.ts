import { defineConfig } from "vite";

// Built into web/dist, served by lakeloop at `/` (src/api/handlers/static.cc). Assets land flat in
// dist/assets/ with hashed names (served immutable); everything is bundled: the page fetches nothing
// from the internet.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, assetsDir: "assets", sourcemap: false },
  server: {
    // `npm run dev`: the API of a local `lakeloop up` (http://127.0.0.1:8080).
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
});
