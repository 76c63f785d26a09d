// Stylesheets are bundled by esbuild into the one hashed CSS file.
declare module "*.css";
