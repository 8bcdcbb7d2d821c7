const b = require("@jsws/b");
module.exports.main = () => b.shout("ocicache");
