// The build of @jsws/c (see ../../build-package.js).
require("../../build-package.js")({ name: "c", deps: ["a", "b"], size: 300000 });
