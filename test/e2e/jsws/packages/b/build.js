// The build of @jsws/b (see ../../build-package.js).
require("../../build-package.js")({ name: "b", deps: ["a"], size: 70000 });
