// wahub dashboard: small progressive enhancement in plain JavaScript (no build step).
// Every page works without it; it only adds live updates where a page asks for them.
"use strict";
