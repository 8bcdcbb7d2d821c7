// The build of @jsws/a (see ../../build-package.js).
require("../../build-package.js")({ name: "a", deps: [], size: 1000, bundle: 65536 });
