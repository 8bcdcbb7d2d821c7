const a = require("@jsws/a");
module.exports.shout = (name) => a.greet(name).toUpperCase() + "!";
