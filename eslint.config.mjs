// @ts-check
// The Nuxt modules' convention: @nuxt/eslint-config with the rules for module
// authors (tooling) and formatting (stylistic). `npx @eslint/config-inspector`
// shows the resolved config.
import { createConfigForNuxt } from '@nuxt/eslint-config/flat'

export default createConfigForNuxt({
  features: {
    tooling: true,
    stylistic: true,
  },
  dirs: {
    src: ['./playground', './test/fixtures/app'],
  },
})
  .append(
    {
      ignores: ['dist', '**/.nuxt', '**/.output', '.data', 'coverage'],
    },
    {
      // JSDoc here documents types for plain .mjs files; a description per tag would only repeat the name.
      rules: {
        'jsdoc/require-returns-description': 'off',
        'jsdoc/require-property-description': 'off',
      },
    },
    {
      // File-based routes are named by their path.
      files: ['**/pages/**/*.vue'],
      rules: { 'vue/multi-word-component-names': 'off' },
    },
  )
